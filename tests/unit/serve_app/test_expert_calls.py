"""The rules of one expert call, through Dispatcher with stand-in handles: retries on transient errors only, one
deadline for the whole chain, stalls that end a stream, and the circuit breaker that skips a failing expert."""

import asyncio
import time

import pytest

from experts.base import ExpertError, GenerationRequest, http_error_kind
from serve_app.dispatch import StreamDelta, StreamEnd
from serve_app.errors import APIError
from serve_app.expert_calls import error_kind

from .fakes import FakeExpert, decision
from .test_dispatch import dispatcher, routed

REQ = GenerationRequest(messages=[{"role": "user", "content": "hi"}], request_id="chatcmpl-1")
FAST = {"retry_backoff_s": 0.0}


def run(coro):
    return asyncio.run(coro)


def test_error_kinds_from_http_statuses_and_ray():
    assert [http_error_kind(s) for s in (401, 403, 400, 422, 404, 429, 500, 503)] == [
        "auth",
        "auth",
        "request",
        "request",
        "request",
        "transient",
        "transient",
        "transient",
    ]
    assert error_kind(ExpertError("x", kind="auth")) == "auth"
    assert error_kind(TimeoutError()) == "transient" and error_kind(RuntimeError()) == "internal"
    with pytest.raises(ValueError, match="Available kinds"):
        ExpertError("x", kind="flaky")


def test_a_transient_error_is_retried_on_the_same_expert():
    flaky = FakeExpert("a!", errors=[ExpertError("a: endpoint answered 503", kind="transient")])
    experts = {"a": flaky, "b": FakeExpert("b!"), "c": FakeExpert("c!")}
    gen = run(dispatcher(experts, **FAST).generate(routed(decision(fanout=["a"])), REQ))
    assert gen.answer.expert == "a" and gen.failures == [] and len(flaky.generate.calls) == 2


@pytest.mark.parametrize("kind", ["auth", "request", "internal"])
def test_auth_and_malformed_request_errors_are_never_retried(kind):
    refused = FakeExpert("a!", errors=[ExpertError("a: refused", kind=kind)])
    experts = {"a": refused, "b": FakeExpert("b!"), "c": FakeExpert("c!")}
    gen = run(dispatcher(experts, **FAST).generate(routed(decision(fanout=["a"])), REQ))
    assert len(refused.generate.calls) == 1 and gen.answer.expert == "c"
    assert gen.failures[0].error == "ExpertError: a: refused"


def test_retries_stop_at_the_configured_count():
    down = FakeExpert(error=ExpertError("a: unreachable", kind="transient"))
    experts = {"a": down, "b": FakeExpert("b!"), "c": FakeExpert("c!")}
    run(dispatcher(experts, retries=2, **FAST).generate(routed(decision(fanout=["a"])), REQ))
    assert len(down.generate.calls) == 3


def test_the_deadline_bounds_the_whole_chain_and_is_a_504():
    slow = {n: FakeExpert(stall_s=5) for n in ("a", "b", "c")}
    d = dispatcher(slow, request_timeout_s=0.3, request_deadline_s=0.5, **FAST)
    started = time.perf_counter()
    with pytest.raises(APIError) as err:
        run(d.generate(routed(decision(fanout=["a"])), REQ))
    assert time.perf_counter() - started < 1.5
    assert err.value.status == 504 and err.value.code == "deadline_exceeded"
    assert "DeadlineExceededError" in err.value.message


def test_an_open_circuit_skips_the_expert_without_calling_it_then_a_probe_closes_it():
    down = FakeExpert(error=ExpertError("a: unreachable", kind="transient"))
    experts = {"a": down, "b": FakeExpert("b!"), "c": FakeExpert("c!")}
    breaker = {"failures": 2, "window_s": 60, "cooldown_s": 0.2}
    d = dispatcher(experts, retries=0, circuit_breaker=breaker, **FAST)
    for _ in range(2):
        run(d.generate(routed(decision(fanout=["a"])), REQ))
    assert d.calls.states()["a"] == "open" and len(down.generate.calls) == 2
    gen = run(d.generate(routed(decision(fanout=["a"])), REQ))
    assert len(down.generate.calls) == 2 and gen.answer.expert == "c"
    assert gen.failures[0].error.startswith("CircuitOpenError: circuit open after 2 failures")
    time.sleep(0.25)
    down.error = None  # the expert is back: the half-open probe answers and closes the circuit
    gen = run(d.generate(routed(decision(fanout=["a"])), REQ))
    assert gen.answer.expert == "a" and d.calls.states()["a"] == "closed"


def test_malformed_request_refusals_do_not_open_the_circuit():
    refusing = FakeExpert(error=ExpertError("a: 400", kind="request"))
    experts = {"a": refusing, "b": FakeExpert("b!"), "c": FakeExpert("c!")}
    d = dispatcher(experts, circuit_breaker={"failures": 1}, **FAST)
    run(d.generate(routed(decision(fanout=["a"])), REQ))
    assert d.calls.states()["a"] == "closed"


async def _events(d, r) -> list:
    return [e async for e in d.stream(r, REQ)]


def test_a_stalled_stream_ends_with_an_error_within_its_idle_timeout():
    stalling = FakeExpert("one two", stall_s=10)
    experts = {"a": stalling, "b": FakeExpert("b!"), "c": FakeExpert("c!")}
    d = dispatcher(experts, stream_idle_timeout_s=0.3, **FAST)
    started = time.perf_counter()
    events = run(_events(d, routed(decision(fanout=["a"]))))
    assert time.perf_counter() - started < 2
    assert [(e.expert, e.text) for e in events if isinstance(e, StreamDelta)] == [("a", "one")]
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.expert == "a" and "stalled" in end.error.error
    assert stalling.stream.calls and experts["b"].stream.calls == []  # no failover after the first byte


def test_the_deadline_also_ends_a_stream_that_keeps_trickling():
    trickle = FakeExpert(" ".join(["w"] * 100), stall_s=0.1)
    d = dispatcher({"a": trickle, "b": FakeExpert(), "c": FakeExpert()}, request_deadline_s=0.5, **FAST)
    started = time.perf_counter()
    events = run(_events(d, routed(decision(fanout=["a"]))))
    assert time.perf_counter() - started < 1.5
    assert "DeadlineExceededError" in events[-1].error.error


def test_a_stream_that_fails_to_start_is_retried_then_failed_over_and_the_first_delta_names_the_failures():
    experts = {
        "a": FakeExpert(error=ExpertError("a: 401", kind="auth")),
        "b": FakeExpert("b!"),
        "c": FakeExpert("c1 c2", errors=[ExpertError("c: 503", kind="transient")]),
    }
    events = run(_events(dispatcher(experts, **FAST), routed(decision(fanout=["a"]))))
    first = events[0]
    assert first.first and first.expert == "c" and [f.expert for f in first.failures] == ["a"]
    assert len(experts["c"].stream.calls) == 2 and len(experts["a"].stream.calls) == 1
