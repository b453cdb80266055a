"""A graph is not ready before its learner: a learner that cannot be placed fails the deployment with an error
naming what it asked for and what the cluster has, instead of a graph that says ready and answers 503."""

import copy
import time

import pytest
import ray
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import TEST_GRAPH, stop_actors

pytestmark = pytest.mark.serve

APP = "routerllm-unplaced"
NAMESPACE = "routerllm-test-unplaced"


def test_a_learner_that_cannot_be_placed_fails_the_graph_naming_its_ask(ray_session, tmp_path):
    graph = copy.deepcopy(TEST_GRAPH)
    graph["experts"] = [e for e in graph["experts"] if e["name"] == "dead_api"]  # the cheapest replica
    graph["learner"] = {
        "namespace": NAMESPACE,
        "num_cpus": 64,
        "ready_timeout_s": 1,
        "data_dir": str(tmp_path / "data"),
        "training": {"strategies": {}},
    }
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    try:
        serve._run(build_app(config), _blocking=False, name=APP, route_prefix="/unplaced")
        deadline, app = time.time() + 180, None
        while time.time() < deadline:
            app = serve.status().applications.get(APP)
            if app is not None and str(app.status).endswith("DEPLOY_FAILED"):
                break
            time.sleep(0.5)
        assert app is not None and str(app.status).endswith("DEPLOY_FAILED"), app
        message = app.deployments["ingress"].message
        assert "LearnerNotReadyError" in message and "asked for num_cpus=64" in message, message
        total = ray.cluster_resources()["CPU"]
        assert f"the cluster has {total:g} CPUs" in message and "lower learner.num_cpus" in message
    finally:
        serve.delete(APP)
        stop_actors(NAMESPACE)


def _deploy(graph: dict, name: str, prefix: str):
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    serve._run(build_app(config), _blocking=False, name=name, route_prefix=prefix)
    deadline, app = time.time() + 180, None
    while time.time() < deadline:
        app = serve.status().applications.get(name)
        if app is not None and str(app.status).split(".")[-1] in ("RUNNING", "DEPLOY_FAILED"):
            return app
        time.sleep(0.5)
    return app


def test_a_running_learner_with_another_config_is_refused_naming_the_field(ray_session, tmp_path):
    """A detached learner keeps the config it was created with: a graph deployed later with a changed learner
    config must fail naming the change, not train with the old config in silence."""
    namespace = "routerllm-test-changed"
    graph = copy.deepcopy(TEST_GRAPH)
    graph["experts"] = [e for e in graph["experts"] if e["name"] == "dead_api"]
    graph["learner"] = {
        "namespace": namespace,
        "num_cpus": 0.1,
        "data_dir": str(tmp_path / "data"),
        "training": {"strategies": {}, "batch_size": 64},
    }
    changed = copy.deepcopy(graph)
    changed["learner"]["training"]["batch_size"] = 8
    try:
        first = _deploy(graph, "routerllm-first", "/first")
        assert first is not None and str(first.status).endswith("RUNNING"), first
        second = _deploy(changed, "routerllm-changed", "/changed")
        assert second is not None and str(second.status).endswith("DEPLOY_FAILED"), second
        message = second.deployments["ingress"].message
        assert "LearnerConfigChangedError" in message, message
        assert "training.batch_size: running 64, wanted 8" in message, message
    finally:
        for app in ("routerllm-first", "routerllm-changed"):
            serve.delete(app)
        stop_actors(namespace)
