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
]


@pytest.mark.parametrize("name, path, body, status, code", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_openai_error(graph_url, name, path, body, status, code):
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(graph_url + path, content=content, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"]
    if code:
        assert error["code"] == code


def test_server_keeps_serving_after_bad_input(graph_url):
    r = httpx.post(graph_url + "/v1/route", json={"prompt": "still here?"}, timeout=60)
    assert r.status_code == 200
