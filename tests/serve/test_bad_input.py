"""Bad requests get OpenAI-style errors with the right status, and the server keeps serving."""

import json

import httpx
import pytest

pytestmark = pytest.mark.serve

OK = [{"role": "user", "content": "hi"}]

CASES = [
    ("malformed json", "/v1/chat/completions", "{not json", 400, "invalid_json"),
    ("body not an object", "/v1/chat/completions", "[1, 2]", 400, "invalid_json"),
    ("missing messages", "/v1/chat/completions", {"model": "router"}, 400, "invalid_value"),
    ("empty messages", "/v1/chat/completions", {"messages": []}, 400, "invalid_value"),
    ("blank content", "/v1/chat/completions", {"messages": [{"role": "user", "content": "  "}]}, 400, "invalid_value"),
    ("messages wrong type", "/v1/chat/completions", {"messages": "hi"}, 400, "invalid_value"),
    ("bad role", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "invalid_value"),
    ("temperature wrong type", "/v1/chat/completions", {"messages": OK, "temperature": "hot"}, 400, "invalid_value"),
    ("negative max_tokens", "/v1/chat/completions", {"messages": OK, "max_tokens": -1}, 400, "invalid_value"),
    (
        "unknown strategy",
        "/v1/chat/completions",
        {"messages": OK, "router": {"strategy": "zzz"}},
        400,
        "unknown_strategy",
    ),
    ("registered, not enabled", "/v1/route", {"prompt": "x", "router": {"strategy": "moe"}}, 400, "unknown_strategy"),
    ("negative weight", "/v1/route", {"prompt": "x", "router": {"weights": {"cost": -1}}}, 400, "invalid_value"),
    ("typo in router prefs", "/v1/route", {"prompt": "x", "router": {"strategi": "dummy"}}, 400, "invalid_value"),
    ("unknown expert", "/v1/chat/completions", {"model": "gpt-9", "messages": OK}, 404, "model_not_found"),
    (
        "prompt over size",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "x" * 2001}]},
        400,
        "context_length_exceeded",
    ),
    ("route without prompt", "/v1/route", {}, 400, None),
    ("body far too large", "/v1/route", {"prompt": "x" * 200_000}, 413, "request_too_large"),
    ("n > 1", "/v1/chat/completions", {"messages": OK, "n": 2}, 400, "unsupported_parameter"),
    ("tools", "/v1/chat/completions", {"messages": OK, "tools": [{"type": "function"}]}, 400, "unsupported_parameter"),
    (
        "json response_format",
        "/v1/chat/completions",
        {"messages": OK, "response_format": {"type": "json_object"}},
        400,
        "unsupported_parameter",
    ),
    ("logprobs", "/v1/chat/completions", {"messages": OK, "logprobs": True}, 400, "unsupported_parameter"),
    ("penalty", "/v1/chat/completions", {"messages": OK, "presence_penalty": 0.5}, 400, "unsupported_parameter"),
    ("max_tokens over the limit", "/v1/chat/completions", {"messages": OK, "max_tokens": 10**9}, 400, None),
    ("1,000 stop strings", "/v1/chat/completions", {"messages": OK, "stop": ["x"] * 1000}, 400, None),
    ("a long stop string", "/v1/chat/completions", {"messages": OK, "stop": "y" * 1000}, 400, None),
    ("null content from a user", "/v1/chat/completions", {"messages": [{"role": "user", "content": None}]}, 400, None),
]


@pytest.mark.parametrize("name, path, body, status, code", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_openai_error(graph_url, name, path, body, status, code):
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(graph_url + path, content=content, timeout=60, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    if code:
        assert error["code"] == code


def test_server_keeps_serving_after_bad_input(graph_url):
    r = httpx.post(graph_url + "/v1/route", json={"prompt": "still here?"}, timeout=60)
    assert r.status_code == 200


NOT_JSON = [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]


@pytest.mark.parametrize("content_type", NOT_JSON)
def test_json_endpoints_refuse_other_content_types(graph_url, content_type):
    """What a browser may send to any origin without a preflight is refused (feedback and rollback: in
    test_online_learning, where a learner exists), so no web page can post here."""
    headers = {} if content_type is None else {"content-type": content_type}
    for path in ("/v1/route", "/v1/chat/completions"):
        r = httpx.post(graph_url + path, content=json.dumps({"prompt": "x"}), headers=headers, timeout=60)
        assert r.status_code == 415, (path, r.text)
        assert r.json()["error"]["code"] == "unsupported_media_type"


def test_what_agent_clients_send_is_accepted(graph_url):
    """An assistant turn with null content and tool_calls, n=1, tools switched off, a text response_format."""
    messages = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {}}]},
        {"role": "tool", "content": "4", "tool_call_id": "c1"},
        {"role": "user", "content": "So what is it?"},
    ]
    body = {
        "messages": messages,
        "max_tokens": 4,
        "n": 1,
        "tools": [{"type": "function"}],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "presence_penalty": 0,
        "user": "someone",
    }
    r = httpx.post(graph_url + "/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text


def test_route_takes_a_chat_completion_body(graph_url):
    body = {"model": "router", "messages": OK, "max_tokens": 8, "temperature": 0.2, "stream": False}
    r = httpx.post(graph_url + "/v1/route", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["routing"]["strategy"] == "dummy"
    direct = httpx.post(graph_url + "/v1/route", json={**body, "model": "smol"}, timeout=60)
    assert direct.status_code == 200 and direct.json()["routing"]["strategy"] == "direct", direct.text
    assert httpx.post(graph_url + "/v1/route", json={**body, "model": "gpt-9"}, timeout=60).status_code == 404
