"""Per-key rate limits shared by every ingress replica: token buckets in one named Ray actor.

Each key has a bucket per kind (`requests`, `tokens`, `feedback`) that holds at most its per-minute limit and
refills at limit / 60 per second, so a key may burst a minute's worth and then goes at the limit's pace. A request
takes one `requests` token and needs the `tokens` bucket out of debt; the tokens it used (prompt + completion, every
answer of a fan-out) are charged once it is answered, without waiting, so one request may overdraw the bucket and the
next waits until it has refilled. A refusal is a 429 `rate_limit_exceeded` with `Retry-After` (whole seconds,
rounded up) saying when the bucket holds enough again; nothing is taken from any bucket by a refused request.

The hot path makes one actor call per request (`admit`, awaited, ~1-3 ms) and one that is not awaited (`charge`).
The limits travel with each call, so the actor holds no config: a redeployed graph with other limits applies them
at once. A limiter that does not answer within `limits.timeout_s` lets the request through and says so in the log
(a slow limiter must not take the graph down; the keys still hold).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from serve_app.auth import Caller
from serve_app.config import RateLimitSettings
from serve_app.errors import APIError
from serve_app.shared_actors import shared_actor

logger = logging.getLogger("routerllm.ingress")

SECONDS_PER_LIMIT = 60.0  # limits are per minute


@dataclass(frozen=True)
class Ask:
    """One bucket a call needs: `kind` with its per-minute `limit`; `need` tokens must be there, `take` are taken."""

    kind: str
    limit: int
    take: float = 1.0
    need: float = 1.0


@dataclass
class _Bucket:
    level: float
    updated: float


class TokenBuckets:
    """Token buckets by (key, kind); plain Python with an injectable clock (the actor wraps one)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, key: str, ask: Ask, now: float) -> _Bucket:
        bucket = self._buckets.setdefault((key, ask.kind), _Bucket(level=float(ask.limit), updated=now))
        rate = ask.limit / SECONDS_PER_LIMIT
        bucket.level = min(float(ask.limit), bucket.level + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def admit(self, key: str, asks: list[Ask]) -> tuple[float, str | None]:
        """Take every ask's tokens if every bucket has what it needs: (0.0, None); otherwise take nothing and
        return (seconds until all would, the kind that is short longest)."""
        now = self.clock()
        buckets = [(ask, self._bucket(key, ask, now)) for ask in asks]
        waits = [((ask.need - b.level) * SECONDS_PER_LIMIT / ask.limit, ask.kind) for ask, b in buckets]
        wait, kind = max(waits, default=(0.0, None))
        if wait > 0:
            return wait, kind
        for ask, bucket in buckets:
            bucket.level -= ask.take
        return 0.0, None

    def charge(self, key: str, ask: Ask) -> None:
        """Take `ask.take` whatever the level (tokens used by a request already answered: the bucket may go into
        debt, down to one limit below zero)."""
        bucket = self._bucket(key, ask, self.clock())
        bucket.level = max(bucket.level - ask.take, -float(ask.limit))


class LimiterActor:
    """The shared buckets (one named, detached actor for all ingress replicas); calls run one at a time."""

    def __init__(self) -> None:
        self.buckets = TokenBuckets()

    def admit(self, key: str, asks: list[Ask]) -> tuple[float, str | None]:
        return self.buckets.admit(key, asks)

    def charge(self, key: str, ask: Ask) -> None:
        self.buckets.charge(key, ask)

    def ping(self) -> bool:
        return True


class RateLimited(APIError):
    """429 with Retry-After."""

    def __init__(self, message: str, kind: str, retry_after_s: float):
        super().__init__(429, message, kind, None, "rate_limit_exceeded")
        self.retry_after = max(1, math.ceil(retry_after_s))

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return super().response({**(headers or {}), "retry-after": str(self.retry_after)})


class RateLimits:
    """The ingress's side: which limits apply, and the calls to the limiter actor (None when nothing is limited:
    no keys, or every limit None)."""

    def __init__(self, settings: RateLimitSettings, keyed: bool):
        self.settings = settings
        limited = any(v is not None for v in (settings.requests_per_min, settings.tokens_per_min))
        limited = limited or settings.feedback_per_min is not None
        self.actor: Any = None
        self._warned_at = 0.0
        if keyed and limited:
            self.actor = shared_actor(LimiterActor, settings.actor_name, settings.namespace)

    async def wait_until_ready(self, timeout_s: float = 60.0) -> None:
        """The limiter answers (the first request must not wait out the actor's start)."""
        if self.actor is not None:
            await asyncio.wait_for(self.actor.ping.remote(), timeout_s)

    def request_asks(self) -> list[Ask]:
        s, asks = self.settings, []
        if s.requests_per_min is not None:
            asks.append(Ask("requests", s.requests_per_min))
        if s.tokens_per_min is not None:
            asks.append(Ask("tokens", s.tokens_per_min, take=0.0, need=1.0))
        return asks

    async def admit_request(self, caller: Caller) -> None:
        """One request of `caller`, or RateLimited."""
        await self._admit(caller, self.request_asks())

    async def admit_feedback(self, caller: Caller) -> None:
        """One feedback of `caller`, or RateLimited."""
        if self.settings.feedback_per_min is not None:
            await self._admit(caller, [Ask("feedback", self.settings.feedback_per_min)])

    def charge_tokens(self, caller_id: str | None, tokens: int) -> None:
        """Charge the tokens a request used (not awaited: the answer is on its way)."""
        if self.actor is None or caller_id is None or self.settings.tokens_per_min is None or tokens <= 0:
            return
        self.actor.charge.remote(caller_id, Ask("tokens", self.settings.tokens_per_min, take=float(tokens)))

    async def _admit(self, caller: Caller, asks: list[Ask]) -> None:
        if self.actor is None or caller.id is None or not asks:
            return
        try:
            wait, kind = await asyncio.wait_for(self.actor.admit.remote(caller.id, asks), self.settings.timeout_s)
        except Exception as e:  # noqa: BLE001 - a slow or restarting limiter lets requests through, loudly
            self._warn(e)
            return
        if wait > 0:
            limit = next(a.limit for a in asks if a.kind == kind)
            raise RateLimited(
                f"rate limit of {limit} {kind} per minute reached for this key; retry after {math.ceil(wait)} s",
                kind,
                wait,
            )

    def _warn(self, e: BaseException) -> None:
        if time.monotonic() - self._warned_at > 60:
            logger.warning("rate limiter unavailable, letting requests through: %r", e)
            self._warned_at = time.monotonic()
