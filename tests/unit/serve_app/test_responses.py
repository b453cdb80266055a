"""The routing metadata is one typed model: the body's `routing` object (keys, order, rounding), the
`x-router-*` headers and the OpenAI payloads all come from it."""

import json

import pytest

from experts.base import GenerationResult
from router_deployments.strategies import RoutingDecision
from serve_app.errors import upstream_error
from serve_app.responses import (
    DONE,
    RouteMetadata,
    RoutingMetadata,
    chat_completion,
    chunk_event,
    error_event,
)
from serve_app.routed_request import ExpertAnswer, ExpertFailure

from .fakes import catalog, decision, result, routed

CATALOG = catalog()


def answered(expert: str = "b") -> ExpertAnswer:
    return ExpertAnswer.of(expert, result(), CATALOG)


def test_answered_body_has_todays_keys_in_order_with_todays_rounding():
    answer = answered("b")
    meta = RoutingMetadata.of(
        routed(decision(fanout=["a", "b"])),
        "b",
        answer,
        [ExpertFailure(expert="a", error="TimeoutError: ")],
        done=11.0,
        feedback="accepted",
        fanout_outcomes={"c": "chatcmpl-1:c"},
    )
    body = meta.body()
    assert list(body) == [
        "request_id",
        "strategy",
        "expert",
        "confidence",
        "policy_version",
        "scores",
        "fanout",
        "latency_ms",
        "failover_from",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "carbon_g",
        "feedback",
        "fanout_outcomes",
    ]
    assert body["confidence"] == 0.123457  # 6 decimals
    latency = {"embedding": 100.0, "router": 50.0, "routing": 250.0, "expert": 750.0, "total": 1000.0}
    assert body["latency_ms"] == latency and list(body["latency_ms"]) == list(latency)
    assert body["failover_from"] == [{"expert": "a", "error": "TimeoutError: "}]
    assert body["cost_usd"] == pytest.approx((10 * 0.002 + 20 * 0.004) / 1000)
    assert body["carbon_g"] == pytest.approx(30 / 3.6e6 * 400)
    assert (body["strategy"], body["expert"], body["policy_version"], body["fanout"]) == ("moe", "b", 3, ["a", "b"])
    json.dumps(body)  # plain JSON types only


def test_headers_come_from_the_same_metadata():
    answer = answered("b")
    meta = RoutingMetadata.of(routed(), "b", answer, done=11.0)
    assert meta.headers() == {
        "x-router-request-id": "chatcmpl-1",
        "x-router-strategy": "moe",
        "x-router-expert": "b",
        "x-router-confidence": "0.123457",
        "x-router-policy-version": "3",
        "x-router-tokens-in": "10",
        "x-router-tokens-out": "20",
        "x-router-cost-usd": str(answer.cost_usd),
        "x-router-carbon-g": str(answer.carbon_g),
        "x-router-latency-ms": "1000.0",
    }


def test_optional_figures_are_left_out_not_null():
    """Before an answer (a stream's head, /v1/route) there are no usage figures, failures or feedback."""
    meta = RoutingMetadata.of(routed(), "a")
    body = meta.body()
    assert set(body) == {
        "request_id",
        "strategy",
        "expert",
        "confidence",
        "policy_version",
        "scores",
        "fanout",
        "latency_ms",
    }
    assert body["latency_ms"] == {"embedding": 100.0, "router": 50.0, "routing": 250.0}
    headers = meta.headers()
    assert headers["x-router-latency-ms"] == "250.0"  # the routing path when nothing was generated
    assert not {"x-router-tokens-in", "x-router-cost-usd"} & set(headers)


def test_route_answer_always_carries_probs_last():
    dec = decision()
    body = RouteMetadata.of(routed(dec), dec.expert, probs=dec.probs).body()
    assert list(body)[-1] == "probs" and body["probs"] == [0.6, 0.1, 0.3]
    assert "tokens_out" not in body
    assert RouteMetadata.of(routed(dec), dec.expert, probs=None).body()["probs"] is None


def test_direct_request_metadata():
    """A direct request has the same type of decision: strategy 'direct', no scores, no policy version."""
    meta = RoutingMetadata.of(routed(RoutingDecision.direct("c"), handle_timings={}), "c", answered("c"), done=10.5)
    body = meta.body()
    assert (body["strategy"], body["confidence"], body["scores"], body["fanout"]) == ("direct", 1.0, {}, ["c"])
    assert body["policy_version"] is None  # present, null
    assert body["latency_ms"] == {"routing": 250.0, "expert": 250.0, "total": 500.0}
    assert meta.headers()["x-router-policy-version"] == "None"


def test_a_replayed_answer_reports_its_recorded_cost():
    recorded = ExpertAnswer.of("a", GenerationResult("x", 10, 20, 0.1, extra={"cost_usd": 0.5}), CATALOG)
    assert recorded.cost_usd == 0.5
    assert ExpertAnswer.of("a", result(), CATALOG).cost_usd == pytest.approx(CATALOG.cost_usd("a", 10, 20))


def test_chat_completion_payload():
    answer = answered("b")
    meta = RoutingMetadata.of(routed(), "b", answer, done=11.0, feedback="accepted")
    payload = chat_completion(meta, answer)
    assert list(payload) == ["id", "object", "created", "model", "choices", "usage", "routing"]
    assert payload["id"] == "chatcmpl-1" and payload["object"] == "chat.completion" and payload["model"] == "b"
    assert payload["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ]
    assert payload["usage"] == {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
    assert payload["routing"] == meta.body()


def test_sse_events():
    event = chunk_event("chatcmpl-1", 7, "b", {"content": "x"}, None, routing={"expert": "b"})
    assert event.startswith("data: ") and event.endswith("\n\n")
    chunk = json.loads(event[len("data: ") :])
    assert chunk == {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 7,
        "model": "b",
        "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}],
        "routing": {"expert": "b"},
    }
    error = json.loads(error_event(upstream_error("no expert could answer: a: boom"))[len("data: ") :])
    assert error == {
        "error": {"message": "no expert could answer: a: boom", "type": "server_error", "code": "expert_unavailable"}
    }
    assert DONE == "data: [DONE]\n\n"


def test_recording_the_outcome_is_its_own_latency_entry_and_counts_in_the_total():
    """A slow learner shows: the time spent recording sits between the expert's and the total."""
    meta = RoutingMetadata.of(routed(record_s=0.125), "a", answered("a"), done=10.5)
    latency = meta.body()["latency_ms"]
    assert list(latency) == ["embedding", "router", "routing", "expert", "record", "total"]
    assert (latency["expert"], latency["record"], latency["total"]) == (250.0, 125.0, 625.0)
    assert meta.headers()["x-router-latency-ms"] == "625.0"
