"""End to end through Ray Serve over HTTP: real embedding, dummy router, real and fake-engine experts."""

import json

import httpx
import pytest
from openai import OpenAI

pytestmark = pytest.mark.serve

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def post(url: str, path: str, body, **kw) -> httpx.Response:
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return httpx.post(url + path, content=content, timeout=120, headers=headers, **kw)


def test_routed_chat_answers_with_routing_metadata(graph_url):
    r = post(graph_url, "/v1/chat/completions", {"messages": ASK, "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    routing = body["routing"]
    assert body["choices"][0]["message"]["content"]
    assert routing["strategy"] == "dummy" and routing["policy_version"] == 0
    assert routing["expert"] in {"smol", "gpu_llm"}  # the dead expert never answers
    assert set(routing["scores"]) == {"smol", "gpu_llm", "dead_api"}
    assert routing["tokens_out"] == body["usage"]["completion_tokens"] > 0
    assert routing["cost_usd"] > 0 and routing["carbon_g"] > 0
    assert r.headers["x-router-request-id"] == body["id"] == routing["request_id"]
    assert r.headers["x-router-expert"] == routing["expert"] == body["model"]
    for header in ("x-router-strategy", "x-router-confidence", "x-router-policy-version", "x-router-latency-ms"):
        assert header in r.headers
    # Body and headers come from the same metadata.
    assert r.headers["x-router-tokens-out"] == str(routing["tokens_out"])
    assert r.headers["x-router-latency-ms"] == str(routing["latency_ms"]["total"])
    assert list(routing["latency_ms"]) == ["embedding", "router", "routing", "expert", "record", "total"]
    assert routing["feedback"] == "unavailable: online learning is not enabled"


def test_naming_an_expert_bypasses_routing_with_a_real_model(graph_url):
    r = post(graph_url, "/v1/chat/completions", {"model": "smol", "messages": ASK, "temperature": 0})
    assert r.status_code == 200, r.text
    assert "Paris" in r.json()["choices"][0]["message"]["content"]
    routing = r.json()["routing"]
    assert (routing["strategy"], routing["expert"], routing["fanout"]) == ("direct", "smol", ["smol"])
    assert routing["policy_version"] is None and routing["scores"] == {} and routing["confidence"] == 1.0
    assert r.headers["x-router-strategy"] == "direct" and r.headers["x-router-policy-version"] == "None"


def test_fake_engine_vllm_expert_through_the_graph(graph_url):
    msg = [{"role": "user", "content": "alpha beta"}]
    r = post(graph_url, "/v1/chat/completions", {"model": "gpu_llm", "messages": msg, "max_tokens": 8})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "echo: user: alpha beta"


def test_openai_client_plain_and_streaming(graph_url):
    client = OpenAI(base_url=graph_url + "/v1", api_key="unused")
    assert {m.id for m in client.models.list().data} == {"router", "smol", "gpu_llm", "dead_api"}
    reply = client.chat.completions.create(
        model="router", messages=ASK, max_tokens=6, extra_body={"router": {"weights": {"cost": 1.0}}}
    )
    assert reply.choices[0].message.content and reply.model_extra["routing"]["expert"] == reply.model
    stream = client.chat.completions.create(
        model="smol", messages=ASK, max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].model_extra["routing"]["expert"] == "smol"


def test_route_endpoint_returns_the_decision_alone(graph_url):
    r = post(graph_url, "/v1/route", {"prompt": "Write a Python function that reverses a list."})
    assert r.status_code == 200, r.text
    routing = r.json()["routing"]
    assert routing["expert"] in routing["scores"] and len(routing["probs"]) == 3
    assert abs(sum(routing["probs"]) - 1) < 1e-6
    assert "tokens_out" not in routing  # nothing was generated
    split = routing["latency_ms"]  # the ingress's clock: the whole routing path and each of its two handle calls
    assert 0 < split["embedding"] < split["routing"] and 0 < split["router"] < split["routing"]


def test_ingress_replica_also_answers_directly(graph_url):
    """Throughput-optimised Serve (configs/serve.env) lets the ingress replica take HTTP itself, one hop shorter."""
    from serve_app.benchmark import direct_ingress_url

    proxy_port = int(graph_url.rsplit(":", 1)[1])
    url = direct_ingress_url("routerllm-test", proxy_port)
    assert url is not None and 8100 <= int(url.rsplit(":", 1)[1]) <= 8199  # the range configs/serve.env sets
    r = post(url, "/v1/route", {"prompt": "Write a Python function that reverses a list."})
    assert r.status_code == 200, r.text
    assert r.json()["routing"]["expert"] in ("smol", "gpu_llm", "dead_api")
    bad = post(url, "/v1/route", {"messages": []})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"


def test_dead_expert_named_directly_is_a_clear_503(graph_url):
    r = post(graph_url, "/v1/chat/completions", {"model": "dead_api", "messages": ASK})
    assert r.status_code == 503
    assert "dead_api" in r.json()["error"]["message"] and "unreachable" in r.json()["error"]["message"]


def test_routed_requests_fail_over_from_a_dead_expert(graph_url):
    seen_failover = False
    for _ in range(30):
        r = post(graph_url, "/v1/chat/completions", {"messages": ASK, "max_tokens": 2})
        assert r.status_code == 200, r.text
        failures = r.json()["routing"].get("failover_from")
        if failures:
            assert failures[0]["expert"] == "dead_api" and r.json()["routing"]["expert"] != "dead_api"
            seen_failover = True
            break
    assert seen_failover


def test_streaming_fails_over_before_the_first_token(graph_url):
    # With failover, a stream routed to the dead expert still answers; named directly, the expert fails before any
    # byte is sent: a plain 503 (tests/serve/test_resilience.py has the failover itself).
    r = post(graph_url, "/v1/chat/completions", {"model": "dead_api", "messages": ASK, "stream": True})
    assert r.status_code == 503 and "dead_api" in r.json()["error"]["message"]


def test_expert_stats_report_calls_and_measured_energy(graph_url):
    post(graph_url, "/v1/chat/completions", {"model": "gpu_llm", "messages": ASK})
    experts = {e["name"]: e for e in httpx.get(graph_url + "/v1/experts", timeout=30).json()["experts"]}
    assert experts["gpu_llm"]["stats"]["calls"] >= 1
    assert "energy_kwh" in experts["gpu_llm"]["stats"]
