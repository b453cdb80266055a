"""A poisoning stream through Serve over HTTP: a key that always scores the priciest expert 1 and every other 0.
Past its cap (learner.training.feedback_cap_per_key scores per window) nothing it sends moves the live policy:
no publish, the same decisions, the same scores. What the scores under the cap can do is measured by
training/benchmarks/poisoning.py (README, Measured)."""

import time

import httpx
import pytest
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import stop_actors
from tests.serve.test_auth import auth_graph, bearer

pytestmark = pytest.mark.serve

NAMESPACE = "routerllm-test-poisoning"
CAP = 4
POISONER = "poisoner-0123456789abcdefghij"
HONEST = [f"honest{i}-0123456789abcdefghij" for i in range(6)]


@pytest.fixture(scope="module")
def poisoning_url(ray_session, tmp_path_factory, routerbench_dir):
    graph = auth_graph(tmp_path_factory.mktemp("poisoning"), str(routerbench_dir / "winograde_train.csv"))
    graph["limits"] = {"namespace": NAMESPACE}  # the default limits: far above this stream
    graph["learner"]["namespace"] = NAMESPACE
    graph["learner"]["training"]["feedback_cap_per_key"] = CAP
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ROUTERLLM_API_KEYS", ",".join([POISONER, *HONEST]))
        env.delenv("ROUTERLLM_ADMIN_KEYS", raising=False)
        app = build_app(config)
    serve.run(app, name="routerllm-poisoning", route_prefix="/poison")
    yield ray_session + "/poison"
    serve.delete("routerllm-poisoning")
    stop_actors(NAMESPACE, "routerllm-learner", "routerllm-rate-limits")


@pytest.fixture(scope="module")
def table(routerbench_dir):
    from training.data.routerbench import load_routerbench

    return load_routerbench(routerbench_dir / "winograde_train.csv")


def post(url: str, path: str, key: str, body: dict) -> httpx.Response:
    r = httpx.post(url + path, json=body, headers=bearer(key), timeout=120)
    assert r.status_code == 200, r.text
    return r


def status(url: str) -> dict:
    return httpx.get(url + "/v1/learner/status", headers=bearer(HONEST[0]), timeout=60).json()


def settle(url: str) -> dict:
    """The status once the learner has read every learned feedback."""
    for _ in range(200):
        s = status(url)
        if s["actor"]["pending_feedback"] == 0:
            return s
        time.sleep(0.1)
    raise AssertionError(f"the learner did not catch up: {s['actor']}")


def scored(url: str, key: str, prompt: str, score_of) -> None:
    routing = post(url, "/v1/chat/completions", key, {"messages": [{"role": "user", "content": prompt}]}).json()
    routing = routing["routing"]
    post(url, "/v1/feedback", key, {"request_id": routing["request_id"], "score": score_of(routing["expert"])})


def decisions(url: str, prompts: list[str]) -> list[tuple]:
    out = []
    for prompt in prompts:
        routing = post(url, "/v1/route", HONEST[0], {"prompt": prompt}).json()["routing"]
        out.append((routing["expert"], routing["policy_version"], routing["scores"]))
    return out


def test_past_its_cap_a_poisoning_key_does_not_move_the_live_policy(poisoning_url, table):
    url = poisoning_url
    recorded = {
        "cheap": table.models.index("mistralai/mistral-7b-chat"),
        "pricey": table.models.index("gpt-4-1106-preview"),
    }
    poison = lambda expert: float(expert == "pricey")  # noqa: E731
    for i in range(12):  # honest traffic, and the poisoner's first CAP scores, which are learned
        key = POISONER if i % 3 == 0 else HONEST[i % len(HONEST)]
        truth = lambda expert, row=i: float(table.scores[row, recorded[expert]])  # noqa: E731
        scored(url, key, table.prompts[i], poison if key == POISONER else truth)
    before = settle(url)
    assert before["actor"]["feedback_over_caller_cap"] == 0 and before["store"]["feedback"] == 12
    live = before["strategies"]["moe"]["live_version"]
    probes = table.prompts[100:110]
    seen = decisions(url, probes)
    assert {v for _, v, _ in seen} == {live}

    for i in range(12, 32):  # the poisoner goes on: every score is acknowledged, none is learned
        scored(url, POISONER, table.prompts[i], poison)
    after = settle(url)
    assert after["store"]["feedback"] == 32 and after["actor"]["feedback_over_caller_cap"] == 20
    assert after["strategies"]["moe"]["live_version"] == live
    assert after["strategies"]["moe"]["experiences_seen"] == before["strategies"]["moe"]["experiences_seen"]
    assert decisions(url, probes) == seen  # the same experts with the same scores

    # The learner was listening all along: one honest score is learned and published at once.
    scored(url, HONEST[1], table.prompts[40], lambda expert: float(table.scores[40, recorded[expert]]))
    for _ in range(100):
        if status(url)["strategies"]["moe"]["live_version"] > live:
            break
        time.sleep(0.1)
    assert status(url)["strategies"]["moe"]["live_version"] > live
