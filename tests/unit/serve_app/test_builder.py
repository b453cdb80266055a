"""The builder: each deployment gets its own settings object whole and the Serve options those settings compute,
all from the YAML (today's values as defaults)."""

import subprocess
import sys

import pytest
import yaml
from ray import serve

from experts.carbon_meter import CarbonConfig
from experts.catalog import ExpertSpec
from experts.expert_deployment import ExpertDeployment
from router_deployments.deployment_settings import EmbeddingConfig, LearnerLink, RouterConfig
from router_deployments.embedding_deployment import EmbeddingDeployment
from router_deployments.router_deployment import RouterDeployment
from serve_app.builder import build_app
from serve_app.config import REPO_ROOT, AppConfig, load_config
from serve_app.ingress import Ingress


class Bound:
    """What `serve.deployment(cls, **options).bind(*args, **kwargs)` was asked to build."""

    def __init__(self, cls, options, args, kwargs):
        self.cls, self.options, self.args, self.kwargs = cls, options, args, kwargs


@pytest.fixture
def deployments(monkeypatch) -> list[Bound]:
    """Record every deployment the builder declares instead of building Serve objects."""
    built: list[Bound] = []

    class Deployment:
        def __init__(self, cls, **options):
            self.cls, self.options = cls, options

        def bind(self, *args, **kwargs):
            built.append(Bound(self.cls, self.options, args, kwargs))
            return built[-1]

    monkeypatch.setattr(serve, "deployment", Deployment)
    return built


def options(name, replicas, cpus, gpus, ongoing) -> dict:
    return {
        "name": name,
        "num_replicas": replicas,
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus},
        "max_ongoing_requests": ongoing,
    }


def test_todays_options_for_the_gpu_config(deployments):
    config = load_config(REPO_ROOT / "configs" / "gpu.yaml")
    ingress = build_app(config)
    by_name = {b.options["name"]: b for b in deployments}
    assert list(by_name) == [f"expert_{e.name}" for e in config.experts] + ["embedding", "router", "ingress"]
    assert by_name["embedding"].options == options("embedding", 1, 1.0, 0.25, 4 * 64)
    assert by_name["router"].options == options("router", 2, 1.0, 0.0, 4 * 32)
    assert by_name["expert_llama3_70b"].options == options("expert_llama3_70b", 1, 2.0, 1.0, 64)
    assert by_name["ingress"].options == options("ingress", 2, 0.1, 0.0, 256)
    assert ingress is by_name["ingress"]


def test_each_deployment_takes_one_settings_object(deployments):
    config = load_config(REPO_ROOT / "configs" / "cpu.yaml")
    build_app(config)
    kinds = {b.cls: b for b in deployments}
    emb, router, ingress = kinds[EmbeddingDeployment], kinds[RouterDeployment], kinds[Ingress]
    assert emb.args == (config.embedding,) and isinstance(emb.args[0], EmbeddingConfig) and emb.kwargs == {}
    assert router.args == (config.router,) and isinstance(router.args[0], RouterConfig)
    # The router embeds each batch through the embedding deployment; cpu.yaml learns.
    assert router.kwargs == {"catalog": config.catalog, "embedder": emb, "learner": config.learner.link()}
    experts = [b for b in deployments if b.cls is ExpertDeployment]
    assert [b.args[0] for b in experts] == config.experts and all(isinstance(b.args[0], ExpertSpec) for b in experts)
    assert all(b.kwargs == {"carbon": config.carbon} and isinstance(b.kwargs["carbon"], CarbonConfig) for b in experts)
    assert ingress.args == (config,)
    assert "embedder" not in ingress.kwargs and ingress.kwargs["router"] is router
    assert ingress.kwargs["experts"] == {e.name: b for e, b in zip(config.experts, experts)}


def test_options_follow_the_yaml(deployments, tmp_path):
    data = yaml.safe_load((REPO_ROOT / "configs" / "cpu.yaml").read_text())
    data["router"].update(num_gpus=0.5, max_ongoing_requests=7, num_replicas=3)
    data["embedding"].update(max_batch_size=8)
    data["server"].update(max_ongoing_requests=1000, num_cpus=1)
    data["experts"][0].update(max_ongoing_requests=2, num_gpus=1)
    data["learner"] = {
        "actor_name": "l",
        "namespace": "ns",
        "poll_interval_s": 0.5,
        "training": {"store_path": str(tmp_path / "s.db"), "checkpoint_dir": str(tmp_path / "c"), "strategies": {}},
    }
    build_app(AppConfig.model_validate(data))
    by_name = {b.options["name"]: b for b in deployments}
    assert by_name["router"].options == options("router", 3, 0.25, 0.5, 7)
    assert by_name["embedding"].options["max_ongoing_requests"] == 4 * 8
    assert by_name["ingress"].options == options("ingress", 1, 1.0, 0.0, 1000)
    assert by_name["expert_slot_70b"].options == options("expert_slot_70b", 1, 0.25, 1.0, 2)
    link = by_name["router"].kwargs["learner"]
    assert link == LearnerLink(actor_name="l", namespace="ns", poll_interval_s=0.5)


def test_config_module_does_not_import_serve_or_fastapi():
    """`import serve_app.config` (the CLI and the benchmarks read configs) stays free of Ray Serve and FastAPI."""
    code = "import sys, serve_app.config; print(sorted(m for m in ('ray.serve', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
