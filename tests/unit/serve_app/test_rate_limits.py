"""Per-key token buckets (serve_app/rate_limits.py), on a fake clock; the 429 they turn into."""

from __future__ import annotations

import asyncio
import json

import pytest

from serve_app.auth import OPEN_CALLER, Caller
from serve_app.config import RateLimitSettings
from serve_app.rate_limits import Ask, RateLimited, RateLimits, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_bursts_its_limit_then_waits_for_the_refill():
    clock = Clock()
    buckets = TokenBuckets(clock)
    ask = [Ask("requests", 60)]  # one per second
    assert all(buckets.admit("a", ask) == (0.0, None) for _ in range(60))
    wait, kind = buckets.admit("a", ask)
    assert kind == "requests" and wait == pytest.approx(1.0)
    assert buckets.admit("b", ask) == (0.0, None)  # keys are apart
    clock.now += 0.5
    assert buckets.admit("a", ask)[0] == pytest.approx(0.5)  # refused calls took nothing
    clock.now += 0.5
    assert buckets.admit("a", ask) == (0.0, None)
    clock.now += 3600
    assert sum(buckets.admit("a", ask) == (0.0, None) for _ in range(100)) == 60  # never above the limit


def test_tokens_are_charged_after_the_answer_and_a_debt_blocks_the_next_request():
    clock = Clock()
    buckets = TokenBuckets(clock)
    asks = [Ask("requests", 600), Ask("tokens", 600, take=0.0, need=1.0)]  # 10 tokens a second
    assert buckets.admit("a", asks) == (0.0, None)
    buckets.charge("a", Ask("tokens", 600, take=700))  # one answer overdraws: level -100
    wait, kind = buckets.admit("a", asks)
    assert kind == "tokens" and wait == pytest.approx(10.1)
    clock.now += 10.1
    assert buckets.admit("a", asks) == (0.0, None)
    buckets.charge("a", Ask("tokens", 600, take=10**9))  # the debt is bounded by one limit
    assert buckets.admit("a", asks)[0] == pytest.approx(60.1)


def test_all_asks_or_nothing():
    buckets = TokenBuckets(Clock())
    asks = [Ask("requests", 2), Ask("feedback", 1)]
    assert buckets.admit("a", asks) == (0.0, None)
    assert buckets.admit("a", asks)[1] == "feedback"
    assert buckets.admit("a", [Ask("requests", 2)]) == (0.0, None)  # the refused call left requests at 1


def test_the_429_says_when_to_retry():
    error = RateLimited("rate limit of 60 requests per minute reached", "requests", 0.2)
    response = error.response()
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    body = json.loads(response.body)["error"]
    assert body == {
        "message": "rate limit of 60 requests per minute reached",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert RateLimited("m", "tokens", 12.01).retry_after == 13


def test_an_open_graph_or_no_limits_needs_no_limiter():
    open_graph = RateLimits(RateLimitSettings(), keyed=False)
    assert open_graph.actor is None
    asyncio.run(open_graph.admit_request(Caller(id="key_x", admin=False)))
    unlimited = RateLimits(
        RateLimitSettings(requests_per_min=None, tokens_per_min=None, feedback_per_min=None), keyed=True
    )
    assert unlimited.actor is None
    asyncio.run(unlimited.admit_feedback(OPEN_CALLER))
    unlimited.charge_tokens("key_x", 100)
    kinds = [a.kind for a in RateLimits(RateLimitSettings(tokens_per_min=None), keyed=False).request_asks()]
    assert kinds == ["requests"]


class _Method:
    def __init__(self, call):
        self.remote = call


class _DeadLimiter:
    """A limiter actor that hangs (restarting) or whose call fails (dead): what the ingress must survive."""

    def __init__(self, hang: bool):
        async def hanging(*_):
            await asyncio.sleep(3600)

        async def failing(*_):
            raise RuntimeError("The actor died unexpectedly before finishing this task.")

        self.admit = _Method(hanging if hang else failing)


@pytest.mark.parametrize("hang", [True, False], ids=["hangs", "dies"])
def test_a_limiter_that_hangs_or_dies_lets_requests_through_and_says_so(hang, caplog):
    limits = RateLimits(RateLimitSettings(timeout_s=0.05), keyed=False)
    limits.actor = _DeadLimiter(hang)
    with caplog.at_level("WARNING", logger="routerllm.ingress"):
        asyncio.run(asyncio.wait_for(limits.admit_request(Caller(id="key_x", admin=False)), 5))
        asyncio.run(asyncio.wait_for(limits.admit_feedback(Caller(id="key_x", admin=False)), 5))
    warnings = [r.getMessage() for r in caplog.records if "rate limiter unavailable" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, not per request
