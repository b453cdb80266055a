"""API keys, caller-bound feedback, rate limits and rollback pinning through Serve over HTTP (serve_app/auth.py,
serve_app/rate_limits.py): a graph whose keys come from the environment, as an operator sets them."""

import copy
import time

import httpx
import openai
import pytest
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from serve_app.ingress import app as ingress_app
from tests.serve import test_console
from tests.serve.conftest import EXPERT_FIGURES, TEST_GRAPH, learner_section, stop_actors

pytestmark = pytest.mark.serve

NAMESPACE = "routerllm-test-auth"
PREFIX = "/auth"
ADMIN = "admin-0123456789abcdefghij"
# One key per test that spends from a key's buckets, so that no test eats another's allowance.
KEYS = {name: f"{name}-0123456789abcdefghij" for name in ("alice", "bob", "rate", "tokens", "pin1", "pin2", "ui")}
# The console test's headless Chromium and page (a missing browser fails, never skips).
browser, page = test_console.browser, test_console.page
OPEN_PATHS = {"/healthz", "/ui", "/ui/{name}"}
REQUESTS_PER_MIN = 6
TOKENS_PER_MIN = 1000  # a winogrande prompt is ~350 tokens: the 4th chat of a key is over


def auth_graph(tmp, data: str) -> dict:
    graph = copy.deepcopy(TEST_GRAPH)
    graph["server"]["max_prompt_chars"] = 20_000
    replay = {"kind": "replay", "data": data}
    graph["experts"] = [
        {"name": "cheap", "backend": {**replay, "model": "mistralai/mistral-7b-chat"}, **EXPERT_FIGURES},
        {"name": "pricey", "backend": {**replay, "model": "gpt-4-1106-preview"}, **EXPERT_FIGURES},
    ]
    for expert, price in zip(graph["experts"], (0.0002, 0.01)):
        expert.update(price_in_per_1k=price, price_out_per_1k=price)
    moe = {"hidden": [16], "seed": 0}
    graph["router"] = {"strategies": {"moe": moe}, "default_strategy": "moe", "num_cpus": 0.1}
    graph["limits"] = {
        "requests_per_min": REQUESTS_PER_MIN,
        "tokens_per_min": TOKENS_PER_MIN,
        "feedback_per_min": 20,
        "namespace": NAMESPACE,
    }
    graph["learner"] = learner_section(tmp, NAMESPACE, {"moe": {"config": moe}}, feedback_cap_per_key=None)
    return graph


@pytest.fixture(scope="module")
def auth_url(ray_session, tmp_path_factory, routerbench_dir):
    graph = auth_graph(tmp_path_factory.mktemp("auth"), str(routerbench_dir / "winograde_train.csv"))
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    with pytest.MonkeyPatch.context() as env:  # the keys are read where the graph is built, as `serve run` does
        env.setenv("ROUTERLLM_API_KEYS", ",".join(KEYS.values()))
        env.setenv("ROUTERLLM_ADMIN_KEYS", ADMIN)
        app = build_app(config)
    serve.run(app, name="routerllm-auth", route_prefix=PREFIX)
    yield ray_session + PREFIX
    serve.delete("routerllm-auth")
    stop_actors(NAMESPACE, "routerllm-learner", "routerllm-rate-limits")


@pytest.fixture(scope="module")
def prompts(routerbench_dir) -> list[str]:
    from training.data.routerbench import load_routerbench

    return load_routerbench(routerbench_dir / "winograde_train.csv").prompts[:40]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def call(url: str, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = bearer(key) if key else {}
    return httpx.request(method, url + path, headers=headers, timeout=120, **kwargs)


def chat(url: str, key: str, prompt: str) -> dict:
    body = {"messages": [{"role": "user", "content": prompt}]}
    r = call(url, "POST", "/v1/chat/completions", key, json=body)
    assert r.status_code == 200, r.text
    return r.json()["routing"]


def feedback(url: str, key: str, request_id: str, score: float) -> httpx.Response:
    return call(url, "POST", "/v1/feedback", key, json={"request_id": request_id, "score": score})


def error(r: httpx.Response) -> dict:
    return r.json()["error"]


def ingress_routes() -> list[tuple[str, str]]:
    """Every endpoint of the ingress, as its OpenAPI schema lists them."""
    return [(m.upper(), path) for path, ops in ingress_app.openapi()["paths"].items() for m in ops]


def test_every_api_route_needs_a_known_key_and_health_and_console_stay_open(auth_url):
    routes = [(m, p) for m, p in ingress_routes() if p not in OPEN_PATHS]
    assert {p for _, p in routes} >= {"/v1/chat/completions", "/v1/feedback", "/admin/rollback", "/admin/unpin"}
    assert all(p.startswith(("/v1/", "/admin/")) for _, p in routes), routes  # nothing new is left unguarded
    for method, path in routes:
        none = call(auth_url, method, path, json={})
        assert none.status_code == 401 and error(none)["code"] == "missing_api_key", (path, none.text)
        assert error(none)["type"] == "invalid_request_error" and "Bearer" in error(none)["message"]
        wrong = call(auth_url, method, path, "not-a-key-0123456789abcdef", json={})
        assert wrong.status_code == 401 and error(wrong)["code"] == "invalid_api_key", (path, wrong.text)
    assert call(auth_url, "GET", "/healthz").status_code == 200
    assert call(auth_url, "GET", "/ui").status_code == 200 and call(auth_url, "GET", "/ui/main.js").is_success


def test_a_user_key_on_admin_routes_is_403_and_an_admin_key_is_also_a_user_key(auth_url):
    for path in ("/admin/rollback", "/admin/unpin"):
        r = call(auth_url, "POST", path, KEYS["alice"], json={"strategy": "moe"})
        assert r.status_code == 403 and error(r)["code"] == "admin_key_required", r.text
    assert call(auth_url, "GET", "/v1/learner/status", ADMIN).status_code == 200
    assert call(auth_url, "GET", "/v1/router", KEYS["alice"]).status_code == 200


def test_the_openai_client_sends_its_api_key(auth_url, prompts):
    client = openai.OpenAI(base_url=auth_url + "/v1", api_key=KEYS["alice"], max_retries=0)
    reply = client.chat.completions.create(model="router", messages=[{"role": "user", "content": prompts[0]}])
    assert reply.choices[0].message.content and reply.model_extra["routing"]["feedback"] == "accepted"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=auth_url + "/v1", api_key="wrong-0123456789abcdefghij", max_retries=0).models.list()


def test_only_an_admin_key_sees_the_experts_backends(auth_url):
    user = call(auth_url, "GET", "/v1/experts", KEYS["alice"]).json()["experts"]
    assert [e["name"] for e in user] == ["cheap", "pricey"]
    assert all("backend" not in e and "price_in_per_1k" in e and "stats" in e for e in user)
    assert "winograde_train.csv" not in str(user)
    admin = call(auth_url, "GET", "/v1/experts", ADMIN).json()["experts"]
    assert admin[1]["backend"]["model"] == "gpt-4-1106-preview" and admin[1]["backend"]["data"]


def test_only_the_key_that_made_a_request_may_score_it_once(auth_url, prompts):
    rid = chat(auth_url, KEYS["alice"], prompts[1])["request_id"]
    other = feedback(auth_url, KEYS["bob"], rid, 1.0)
    unknown = feedback(auth_url, KEYS["bob"], "chatcmpl-unknown", 1.0)
    assert other.status_code == unknown.status_code == 404
    assert error(other)["message"] == f"no routed request has id {rid!r}"  # word for word what an unknown id gets
    assert error(unknown)["message"] == "no routed request has id 'chatcmpl-unknown'"
    assert error(other)["code"] == error(unknown)["code"] == "unknown_request"
    assert feedback(auth_url, ADMIN, rid, 1.0).status_code == 404  # an admin key is another caller too
    assert feedback(auth_url, KEYS["alice"], rid, 0.5).status_code == 200
    assert feedback(auth_url, KEYS["alice"], rid, 0.9).status_code == 409


def test_requests_over_a_keys_limit_are_429_with_retry_after(auth_url, prompts):
    body = {"prompt": prompts[2]}
    for _ in range(REQUESTS_PER_MIN):
        assert call(auth_url, "POST", "/v1/route", KEYS["rate"], json=body).status_code == 200
    r = call(auth_url, "POST", "/v1/route", KEYS["rate"], json=body)
    assert r.status_code == 429, r.text
    assert error(r)["code"] == "rate_limit_exceeded" and error(r)["type"] == "requests"
    assert 1 <= int(r.headers["retry-after"]) <= 60 // REQUESTS_PER_MIN
    assert call(auth_url, "POST", "/v1/route", KEYS["bob"], json=body).status_code == 200  # other keys go on


def test_tokens_over_a_keys_limit_are_429_with_retry_after(auth_url, prompts):
    used = 0
    for prompt in prompts[3:8]:
        body = {"messages": [{"role": "user", "content": prompt}]}
        r = call(auth_url, "POST", "/v1/chat/completions", KEYS["tokens"], json=body)
        if r.status_code == 429:
            break
        assert r.status_code == 200, r.text
        used += r.json()["usage"]["total_tokens"]
    assert r.status_code == 429 and error(r)["type"] == "tokens", r.text
    assert used >= TOKENS_PER_MIN and int(r.headers["retry-after"]) >= 1


def test_a_rollback_stays_live_until_an_admin_unpins(auth_url, prompts):
    def status() -> dict:
        return call(auth_url, "GET", "/v1/learner/status", KEYS["pin2"]).json()["strategies"]["moe"]

    def teach(key: str, prompt: str) -> None:
        """One scored answer, then wait for the publish it brings (this learner publishes after every update)."""
        target = status()["publishes"] + 1
        routing = chat(auth_url, key, prompt)
        assert feedback(auth_url, key, routing["request_id"], 1.0).status_code == 200
        for _ in range(100):
            if status()["publishes"] >= target:
                return
            time.sleep(0.2)
        raise AssertionError(f"no publish: {status()}")

    teach(KEYS["pin1"], prompts[10])
    before = status()["live_version"]
    r = call(auth_url, "POST", "/admin/rollback", ADMIN, json={"strategy": "moe"})
    assert r.status_code == 200, r.text
    pinned = r.json()["live_version"]
    assert pinned < before and r.json()["pinned"] == pinned and status()["pinned"] == pinned
    teach(KEYS["pin1"], prompts[11])  # a publish while pinned is held, not made live
    s = status()
    assert s["live_version"] == pinned and s["held_versions"] and s["pinned"] == pinned
    r = call(auth_url, "POST", "/admin/unpin", ADMIN, json={"strategy": "moe"})
    assert r.status_code == 200 and r.json()["unpinned"] == pinned, r.text
    teach(KEYS["pin2"], prompts[12])
    s = status()
    assert s["pinned"] is None and s["held_versions"] == [] and s["live_version"] > pinned


def test_the_console_asks_for_a_key_then_chats_with_it(page, auth_url, prompts):
    page.goto(auth_url + "/ui")
    page.wait_for_selector("#key-form:not([hidden])", timeout=30_000)
    assert "this graph asks for an API key" in page.locator("#key-message").inner_text()
    assert page.locator("#send").is_disabled()
    page.fill("#api-key", "wrong-0123456789abcdefghij")
    page.click("#key-save")
    page.wait_for_selector("#key-form:not([hidden])", timeout=30_000)
    page.wait_for_function("() => document.getElementById('key-message').textContent.includes('not accepted')")
    page.fill("#api-key", KEYS["ui"])
    page.click("#key-save")
    page.wait_for_selector("#send:not([disabled])", timeout=30_000)
    assert page.locator("#key-form").is_hidden() and "API key in use" in page.locator("#key-status").inner_text()
    page.fill("#prompt", prompts[20])
    page.click("#send")
    page.wait_for_selector(".answer.done, .answer.failed", timeout=60_000)
    answer = page.locator(".answer").first
    assert "failed" not in answer.get_attribute("class"), answer.inner_text()
    assert answer.locator(".expert").inner_text().strip() in ("cheap", "pricey")
    page.screenshot(path=str(test_console.artifacts_dir() / "console-keyed.png"))
    page.click("#forget-key")  # forgotten: the next load asks again
    page.wait_for_selector("#key-form:not([hidden])", timeout=30_000)


def test_an_open_graph_reads_the_host_serve_listens_on(auth_url, caplog):
    """What an open ingress replica checks at start (a private Serve API: if it moves, this fails loudly here
    rather than the check turning into a warning)."""
    from ray.serve.context import _get_global_client

    from serve_app.auth import refuse_open_exposure

    assert _get_global_client().http_config.host == "127.0.0.1"
    refuse_open_exposure()  # loopback: allowed
    assert "could not read Serve's HTTP host" not in caplog.text
