"""Every registered online strategy routes inside the running graph, chosen per request by name."""

import copy

import httpx
import numpy as np
import pytest
import yaml
from ray import serve

from router_deployments.strategies import build_strategy
from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import TEST_GRAPH
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.serve

STRATEGIES = ["dummy", "knn", "bert", "complexity", "moe", "rl"]


def _complexity_model(path) -> str:
    """A tiny local text classifier standing in for grahamaco/question-complexity-classifier (no hub here)."""
    return save_tiny_bert(path, layers=1, classifier=True, num_labels=2)


@pytest.fixture(scope="module")
def all_strategies_url(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("strategies")
    graph = copy.deepcopy(TEST_GRAPH)
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    rng = np.random.default_rng(0)
    knn = build_strategy("knn", config.catalog, {"k": 5})
    vectors = rng.normal(size=(40, 384)).astype(np.float32)
    knn.fit(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), rng.random((40, 3)).astype(np.float32))
    knn.save(tmp / "knn")
    graph["router"] = {
        "strategies": {
            "dummy": {"seed": 0},
            "knn": {"k": 5, "checkpoint": str(tmp / "knn")},
            "bert": {"max_length": 32},
            "complexity": {
                "model": _complexity_model(tmp / "complexity"),
                "experts": {"simple": "smol", "complex": "gpu_llm"},
            },
            "moe": {"hidden": [16]},
            "rl": {"hidden": [16, 16]},
        },
        "default_strategy": "dummy",
        "num_cpus": 0.1,
    }
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    serve.run(build_app(config), name="routerllm-strategies", route_prefix="/strategies")
    yield ray_session + "/strategies"
    serve.delete("routerllm-strategies")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_routes_in_the_graph(all_strategies_url, strategy):
    body = {"prompt": "Write a Python function that merges two sorted lists.", "router": {"strategy": strategy}}
    r = httpx.post(all_strategies_url + "/v1/route", json=body, timeout=120)
    assert r.status_code == 200, r.text
    routing = r.json()["routing"]
    assert routing["strategy"] == strategy
    assert set(routing["scores"]) == {"smol", "gpu_llm", "dead_api"}
    assert routing["expert"] in routing["scores"] and 0 <= routing["confidence"] <= 1
    if strategy == "complexity":
        assert routing["expert"] in {"smol", "gpu_llm"}
