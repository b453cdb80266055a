"""One Ray session for all Serve tests (dashboard off) and the test graph, deployed once per module."""

import socket
import time

import httpx
import pytest
import ray
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from serve_app.serve_env import apply_serve_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session():
    apply_serve_env()  # test the graph under the Serve settings `make run` uses
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


EXPERT_FIGURES = dict(
    params_b=1, energy_per_token_j=1.0, expected_latency_s=1.0, quality_prior=0.5, max_new_tokens=8, num_cpus=0.1
)

TEST_GRAPH = {
    "server": {"max_prompt_chars": 2000, "request_timeout_s": 120},
    "embedding": {"num_cpus": 0.1, "threads": 1},
    "router": {"strategies": {"dummy": {"seed": 0}}, "default_strategy": "dummy", "num_cpus": 0.1},
    "carbon": {"country_iso_code": "USA", "measure_with_codecarbon": True},
    "experts": [
        {
            "name": "smol",
            "backend": {"kind": "transformers", "model": "packaged:smollm2-135m-instruct", "torch_threads": 1},
            "price_in_per_1k": 0.001,
            "price_out_per_1k": 0.002,
            **EXPERT_FIGURES,
        },
        {
            "name": "gpu_llm",
            "backend": {"kind": "vllm", "model": "packaged:all-minilm-l6-v2", "engine_module": "experts.fake_vllm"},
            "price_in_per_1k": 0.01,
            "price_out_per_1k": 0.03,
            **EXPERT_FIGURES,
        },
        {
            # Nothing listens on this port: a dead expert.
            "name": "dead_api",
            "backend": {"kind": "openai", "model": "m", "base_url": f"http://127.0.0.1:{_free_port()}/v1"},
            "price_in_per_1k": 0.0,
            "price_out_per_1k": 0.0,
            **EXPERT_FIGURES,
        },
    ],
}


def learner_section(tmp, namespace: str, strategies: dict, **training) -> dict:
    """The `learner` section of a test graph: its own store and policies under `tmp`, a publish after every update
    (so that a test sees its feedback reach the routers), nothing held back; `training` overrides any of it."""
    return {
        "namespace": namespace,
        "num_cpus": 0.1,
        "poll_interval_s": 0.1,
        "training": {
            "store_path": str(tmp / "outcomes.db"),
            "checkpoint_dir": str(tmp / "policies"),
            "strategies": strategies,
            "batch_size": 4,
            "min_experiences": 1,
            "publish_every_updates": 1,
            "publish_every_s": None,
            "holdback_fraction": 0.0,
            **training,
        },
    }


def stop_actors(namespace: str, *names: str) -> None:
    """Kill the named detached actors a test graph left behind (the learner, the rate limiter, the ledger), if
    they exist: they outlive serve.delete by design."""
    for name in names or ("routerllm-learner",):
        try:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        except ValueError:
            pass


@pytest.fixture(scope="module")
def graph_url(ray_session):
    """The graph on a real HTTP port; torn down after the module."""
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(TEST_GRAPH)))
    serve.run(build_app(config), name="routerllm-test", route_prefix="/")
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{ray_session}/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    yield ray_session
    serve.delete("routerllm-test")
