"""Online learning through the graph: outcomes recorded, feedback errors, publishes reaching every router
replica, rollback, and a killed learner that loses nothing acknowledged."""

import copy
import time

import httpx
import pytest
import ray
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import TEST_GRAPH, learner_section, stop_actors

pytestmark = pytest.mark.serve

NAMESPACE = "routerllm-test-learning"
ASK = [{"role": "user", "content": "Write a haiku about routers."}]


# moe with the Bayesian head (outcome_head.py): its statistics travel with every published version to the replicas.
MOE = {"hidden": [16], "seed": 0, "head": {"ridge": 30.0}, "network_weight": 0.5}


@pytest.fixture(scope="module")
def learning_url(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("learner")
    graph = copy.deepcopy(TEST_GRAPH)
    graph["experts"] = graph["experts"][:2]  # smol + fake-engine vLLM: both answer
    graph["experts"][0]["max_new_tokens"] = 2
    graph["router"] = {
        "strategies": {"dummy": {"seed": 0}, "moe": MOE},
        "default_strategy": "moe",
        "num_replicas": 2,
        "num_cpus": 0.1,
    }
    graph["learner"] = learner_section(tmp, NAMESPACE, {"moe": {"config": MOE}}, min_experiences=2)
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    serve.run(build_app(config), name="routerllm-learning", route_prefix="/learn")
    yield ray_session + "/learn"
    serve.delete("routerllm-learning")
    stop_actors(NAMESPACE)


def chat(url: str, **extra) -> dict:
    r = httpx.post(url + "/v1/chat/completions", json={"messages": ASK, "max_tokens": 2, **extra}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["routing"]


def feedback(url: str, request_id, score) -> httpx.Response:
    return httpx.post(url + "/v1/feedback", json={"request_id": request_id, "score": score}, timeout=60)


def status(url: str) -> dict:
    r = httpx.get(url + "/v1/learner/status", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_learner_is_ready_with_the_graph_and_says_how_it_started(learning_url):
    moe = status(learning_url)["strategies"]["moe"]  # answers at once: the ingress waited for the actor
    assert moe["start"] == "cold" and moe["live_version"] >= 1
    assert moe["epsilon"] == 0.2  # moe explores: the learner publishes its rate with the live version
    assert set(moe["exploration"]) == {"logged_answers", "explored_share", "mean_logged_propensity"}


def test_feedback_errors(learning_url):
    routing = chat(learning_url)
    assert routing["strategy"] == "moe" and routing["feedback"] == "accepted"
    rid = routing["request_id"]
    assert feedback(learning_url, rid, 1.5).status_code == 422
    assert feedback(learning_url, rid, "good").status_code == 400
    unknown = feedback(learning_url, "chatcmpl-unknown", 0.5)
    assert unknown.status_code == 404
    message = unknown.json()["error"]["message"]
    assert message == "no routed request has id 'chatcmpl-unknown'", message  # not Ray's traceback, pid or address
    assert feedback(learning_url, rid, 0.75).status_code == 200
    second = feedback(learning_url, rid, 0.1)
    assert second.status_code == 409 and second.json()["error"]["code"] == "duplicate_feedback"


def test_publishes_reach_every_replica_and_rollback_works(learning_url):
    for _ in range(12):
        routing = chat(learning_url)
        assert feedback(learning_url, routing["request_id"], 1.0 if routing["expert"] == "gpu_llm" else 0.0).is_success
    deadline = time.time() + 60
    while time.time() < deadline and status(learning_url)["strategies"]["moe"]["live_version"] < 2:
        time.sleep(0.5)
    live = status(learning_url)["strategies"]["moe"]["live_version"]
    assert live >= 2, status(learning_url)
    # Every replica serves the live version shortly after (they poll every 0.1 s).
    deadline = time.time() + 10
    seen: set = set()
    while time.time() < deadline:
        seen = {chat(learning_url)["policy_version"] for _ in range(6)}
        if seen == {status(learning_url)["strategies"]["moe"]["live_version"]}:
            break
    assert len(seen) == 1
    r = httpx.post(learning_url + "/admin/rollback", json={"strategy": "moe"}, timeout=60)
    assert r.status_code == 200, r.text
    rolled = r.json()["live_version"]
    assert rolled < max(seen)
    deadline = time.time() + 10
    while time.time() < deadline and chat(learning_url)["policy_version"] != rolled:
        time.sleep(0.2)
    assert {chat(learning_url)["policy_version"] for _ in range(6)} == {rolled}


def test_killed_learner_loses_nothing_acknowledged(learning_url):
    acknowledged = []
    for _ in range(3):
        routing = chat(learning_url)
        assert feedback(learning_url, routing["request_id"], 0.5).status_code == 200
        acknowledged.append(routing["request_id"])
    before = status(learning_url)["store"]["feedback"]
    ray.kill(ray.get_actor("routerllm-learner", namespace=NAMESPACE), no_restart=False)  # Ray restarts it
    # Serving goes on while it restarts; the duplicate check proves the acknowledged scores survived.
    deadline = time.time() + 60
    while True:
        r = feedback(learning_url, acknowledged[0], 0.9)
        if r.status_code == 409 or time.time() > deadline:
            break
        assert r.status_code == 503, r.text  # unavailable while restarting, never silently accepted
        time.sleep(0.5)
    assert r.status_code == 409
    assert status(learning_url)["store"]["feedback"] >= before


def test_a_web_page_cannot_roll_back_or_score(learning_url):
    """A cross-origin page can post text/plain or a form without a preflight; both are refused (415), so the live
    policy stays as it is."""
    before = status(learning_url)["strategies"]["moe"]["live_version"]
    for path, body in (("/admin/rollback", '{"strategy": "moe"}'), ("/v1/feedback", '{"request_id": "x", "score": 1}')):
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            r = httpx.post(learning_url + path, content=body, headers={"content-type": content_type}, timeout=60)
            assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text
    assert status(learning_url)["strategies"]["moe"]["live_version"] == before
