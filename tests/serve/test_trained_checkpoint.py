"""A checkpoint trained with `routerllm train` serves under the graph's own expert names (`trained_as`), and a
request that sets one objective weight keeps the config's defaults for the others."""

import copy
import csv
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from ray import serve

from router_deployments.objectives import merge_weights
from router_deployments.strategies import RouteContext, build_strategy
from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import TEST_GRAPH, stop_actors
from training.data.embedding_cache import embed_texts
from training.data.routerbench import PRESETS

pytestmark = pytest.mark.serve

PROMPT = "Write a Python function that merges two sorted lists."
DEFAULT_WEIGHTS = {"quality": 1.0, "cost": 0.3, "carbon": 0.5, "latency": 0.2}
MOE = {"hidden": [16], "quality_prior_weight": 0.5}
NAMESPACE = "routerllm-test-trained"


def _slice(source: Path, out: Path, rows: int = 60) -> Path:
    """The first `rows` prompts of one shared RouterBench file (read in place, the slice in a temp dir)."""
    with open(source, newline="", encoding="utf-8") as fh:
        csv.field_size_limit(1 << 30)
        reader = csv.DictReader(fh)
        kept = [row for _, row in zip(range(rows), reader)]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(kept)
    return out


@pytest.fixture(scope="module")
def trained(routerbench_dir, tmp_path_factory) -> Path:
    """`routerllm train moe --experts seed4` on a slice of the shared data, as a user runs it."""
    tmp = tmp_path_factory.mktemp("trained")
    data = _slice(routerbench_dir / "mbpp_train.csv", tmp / "mbpp_slice.csv")
    routerllm = Path(sys.executable).with_name("routerllm")
    command = [str(routerllm), "train", "moe", "--data", str(data), "--experts", "seed4", "--out", str(tmp / "moe")]
    command += ["--hidden", "16", "--epochs", "5", "--no-progress"]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    return tmp / "moe"


def _graph(checkpoint: Path, data_dir: Path) -> dict:
    graph = copy.deepcopy(TEST_GRAPH)
    fourth = {**copy.deepcopy(graph["experts"][1]), "name": "gpu_llm_b"}
    graph["experts"].append(fourth)
    for spec, column in zip(graph["experts"], PRESETS["seed4"]):
        spec["trained_as"] = column
    graph["router"] = {
        "strategies": {"dummy": {"seed": 0}, "moe": {**MOE, "checkpoint": str(checkpoint)}},
        "default_strategy": "moe",
        "default_weights": DEFAULT_WEIGHTS,
        "num_cpus": 0.1,
    }
    # One line warm-starts the learner too: it trains the router's moe from the checkpoint, not from scratch.
    graph["learner"] = {
        "namespace": NAMESPACE,
        "num_cpus": 0.1,
        "data_dir": str(data_dir),
        "training": {"strategies": {"moe": {}}},
    }
    return graph


@pytest.fixture(scope="module")
def checkpoint_url(ray_session, trained, tmp_path_factory):
    graph = _graph(trained, tmp_path_factory.mktemp("learner-data"))
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    serve.run(build_app(config), name="routerllm-trained", route_prefix="/trained")
    yield ray_session + "/trained", config
    serve.delete("routerllm-trained")
    stop_actors(NAMESPACE)


def route(url: str, **router) -> dict:
    r = httpx.post(url + "/v1/route", json={"prompt": PROMPT, "router": router}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["routing"]


def test_a_seed4_checkpoint_routes_under_the_graphs_own_expert_names(checkpoint_url, trained):
    url, config = checkpoint_url
    routing = route(url)
    assert routing["strategy"] == "moe" and set(routing["scores"]) == {"smol", "gpu_llm", "dead_api", "gpu_llm_b"}
    # The served scores are the checkpoint's: the same network loaded here under the same catalog agrees.
    local = build_strategy("moe", config.catalog, {**MOE, "checkpoint": str(trained)})
    local.setup()
    context = RouteContext(text=PROMPT, embedding=embed_texts([PROMPT])[0], weights=config.router.default_weights)
    expected = dict(zip(config.catalog.names, local.score([context])[0]))
    assert routing["expert"] == max(expected, key=expected.get)
    np.testing.assert_allclose([routing["scores"][n] for n in expected], list(expected.values()), atol=1e-2)


def test_the_learner_warm_starts_from_the_same_checkpoint(checkpoint_url, trained):
    url, _ = checkpoint_url
    status = httpx.get(url + "/v1/learner/status", timeout=60).json()["strategies"]["moe"]
    assert status["start"] == f"warm from {trained}" and status["live_version"] == 1
    before = route(url)["scores"]
    deadline = time.time() + 30
    while time.time() < deadline and route(url)["policy_version"] != 1:
        time.sleep(0.2)  # the replica pulls v1, the checkpoint's own weights: the scores do not move
    after = route(url)
    assert after["policy_version"] == 1
    np.testing.assert_allclose(list(after["scores"].values()), list(before.values()), atol=1e-6)


def test_a_request_that_sets_one_weight_keeps_the_config_defaults_for_the_rest(checkpoint_url):
    url, config = checkpoint_url
    one = route(url, weights={"cost": 1.0})["scores"]
    spelled_out = {**DEFAULT_WEIGHTS, "cost": 1.0}
    assert merge_weights(config.router.default_weights, {"cost": 1.0}).model_dump() == spelled_out
    assert route(url, weights=spelled_out)["scores"] == one
    zeroed = route(url, weights={"quality": 1.0, "cost": 1.0, "carbon": 0.0, "latency": 0.0})["scores"]
    assert zeroed != one  # what the old merge sent: the defaults of the unset weights were lost
