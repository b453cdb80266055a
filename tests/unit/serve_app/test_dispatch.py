"""Dispatch with stand-in handles: one decision type for routed and direct requests, candidate order, the
concurrent fan-out, failover, and streaming that fails over only before the first piece."""

import asyncio
import time

import numpy as np
import pytest

from experts.base import GenerationRequest
from router_deployments.router_deployment import UnknownStrategyError
from router_deployments.strategies import RoutingDecision
from serve_app.api_models import RouterPreferences
from serve_app.config import AppConfig
from serve_app.dispatch import Dispatcher, StreamDelta, StreamEnd
from serve_app.errors import APIError

from .fakes import FakeExpert, FakeRouter, catalog, decision
from .fakes import routed as routed_at_10


def routed(dec=None, **kw):
    """A request that arrived now: the deadline counts from its arrival on time.perf_counter()."""
    now = time.perf_counter()
    return routed_at_10(dec, **{"started": now, "routed": now, **kw})


REQ = GenerationRequest(messages=[{"role": "user", "content": "hi"}], request_id="chatcmpl-1")


def dispatcher(experts=None, router=None, failover=True, **server) -> Dispatcher:
    config = AppConfig(
        server={"failover": failover, **server},
        router={"default_weights": {"quality": 1.0, "cost": 0.2, "carbon": 0.1}},
        experts=catalog().model_dump()["experts"],
    )
    experts = experts or {n: FakeExpert(f"answer from {n}") for n in ("a", "b", "c")}
    return Dispatcher(config, router or FakeRouter(), experts)


def run(coro):
    return asyncio.run(coro)


def test_naming_an_expert_builds_a_direct_decision_without_embedding():
    d = dispatcher()
    r = run(d.decide("chatcmpl-1", 0.0, "b", "hi", RouterPreferences()))
    assert r.decision == RoutingDecision.direct("b") and r.decision.is_direct
    assert r.embedding is None and not r.learnable and r.handle_timings == {}
    assert d.router.route.calls == []
    assert d.candidates(r) == ["b"]  # a direct request never fails over to another expert


def test_unknown_model_is_a_404_listing_the_models():
    with pytest.raises(APIError) as err:
        run(dispatcher().decide("x", 0.0, "gpt-9", "hi", RouterPreferences()))
    assert err.value.status == 404 and err.value.code == "model_not_found"
    assert "['router', 'a', 'b', 'c']" in err.value.message


def test_routed_request_carries_the_router_decision_and_its_context():
    dec = decision()
    d = dispatcher(router=FakeRouter(dec))
    prefs = RouterPreferences(strategy="moe", weights={"cost": 1.0}, carbon_budget_left=0.25)
    r = run(d.decide("chatcmpl-1", 0.0, "router", "hi", prefs))
    assert r.decision is dec and r.request_id == "chatcmpl-1"
    np.testing.assert_array_equal(r.embedding, np.full(4, 0.5, np.float32))
    assert set(r.handle_timings) == {"embedding", "router"} and r.routed >= r.started
    assert r.handle_timings["embedding"] == 0.01  # the router's embedding call, the rest is the router's
    (query,) = d.router.route.calls[0]
    assert query.embedding is None  # the router embeds its batch in one call
    assert query.strategy == "moe" and query.carbon_budget_left == 0.25
    # The weight the request set over the config's defaults for the others (carbon stays 0.1, not 0).
    assert query.weights == {"quality": 1.0, "cost": 1.0, "carbon": 0.1, "latency": 0.0}
    assert r.weights.model_dump() == query.weights and r.carbon_budget_left == 0.25
    unset = run(d.decide("x", 0.0, "router", "hi", RouterPreferences()))
    assert unset.weights.model_dump() == {"quality": 1.0, "cost": 0.2, "carbon": 0.1, "latency": 0.0}
    assert d.router.route.calls[1][0].weights == unset.weights.model_dump()


def test_unknown_strategy_is_a_400():
    d = dispatcher(router=FakeRouter(error=UnknownStrategyError("Strategy 'zzz' is unknown.")))
    with pytest.raises(APIError) as err:
        run(d.decide("x", 0.0, "router", "hi", RouterPreferences(strategy="zzz")))
    assert (err.value.status, err.value.code, err.value.param) == (400, "unknown_strategy", "router.strategy")


def test_candidates_are_the_fanout_then_the_rest_by_score():
    r = routed(decision(fanout=["b"]))  # scores a 0.9, b 0.2, c 0.5
    assert dispatcher().candidates(r) == ["b", "a", "c"]
    assert dispatcher(failover=False).candidates(r) == ["b"]


def test_fanout_is_called_concurrently_and_the_first_answer_is_returned():
    d = dispatcher()
    gen = run(d.generate(routed(decision(fanout=["c", "a"])), REQ))
    assert gen.answer.expert == "c" and gen.answer.result.text == "answer from c"
    assert [a.expert for a in gen.others] == ["a"] and gen.failures == []
    assert gen.answer.cost_usd == pytest.approx(catalog().cost_usd("c", 10, 20))
    assert d.experts["b"].generate.calls == []  # failover is not needed


def test_failover_moves_on_one_expert_at_a_time_until_one_answers():
    experts = {"a": FakeExpert(error=RuntimeError("down")), "b": FakeExpert("b!"), "c": FakeExpert("c!")}
    gen = run(dispatcher(experts).generate(routed(decision(fanout=["a"])), REQ))
    assert gen.answer.expert == "c"  # next by score (c 0.5 > b 0.2)
    assert [(f.expert, f.error) for f in gen.failures] == [("a", "RuntimeError: down")]
    assert experts["b"].generate.calls == []


def test_every_expert_failing_is_a_503_naming_each():
    experts = {n: FakeExpert(error=RuntimeError(f"{n} down")) for n in ("a", "b", "c")}
    with pytest.raises(APIError) as err:
        run(dispatcher(experts).generate(routed(decision(fanout=["a"])), REQ))
    assert err.value.status == 503 and err.value.code == "expert_unavailable"
    assert err.value.message == (
        "no expert could answer: a: RuntimeError: a down; c: RuntimeError: c down; b: RuntimeError: b down"
    )


async def _events(d: Dispatcher, r) -> list:
    return [e async for e in d.stream(r, REQ)]


def test_stream_fails_over_before_the_first_piece():
    experts = {"a": FakeExpert(error=RuntimeError("down")), "b": FakeExpert("b b"), "c": FakeExpert("one two")}
    events = run(_events(dispatcher(experts), routed(decision(fanout=["a"]))))
    deltas = [e for e in events if isinstance(e, StreamDelta)]
    assert [(e.expert, e.text, e.first) for e in deltas] == [("c", "one", True), ("c", "two", False), ("c", "", False)]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.expert == "c" and end.answer.result.text == "one two"
    assert [f.expert for f in end.failures] == ["a"]


def test_stream_failing_after_its_first_piece_ends_with_an_error_from_that_expert():
    experts = {"a": FakeExpert("x y z", error=RuntimeError("cut"), pieces_before_error=1), "b": FakeExpert()}
    events = run(_events(dispatcher(experts), routed(decision(fanout=["a"]))))
    assert [e.text for e in events if isinstance(e, StreamDelta)] == ["x"]
    end = events[-1]
    assert end.expert == "a" and end.answer is None and end.failures == []
    assert end.error.expert == "a" and end.error.error == "RuntimeError: cut"
    assert experts["b"].stream.calls == []  # the client already has part of a's answer
