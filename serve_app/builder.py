"""Builds the Serve application from config: every replica count and GPU share comes from the YAML."""

# No `from __future__ import annotations` here: Serve reads the builder's argument type at run time.

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from experts.expert_deployment import ExpertDeployment
from router_deployments.embedding_deployment import EmbeddingDeployment
from router_deployments.router_deployment import RouterDeployment
from serve_app.config import DEFAULT_CONFIG, AppConfig, load_config
from serve_app.ingress import Ingress


class GraphArgs(BaseModel):
    """Arguments of `serve run serve_app:graph key=value ...`."""

    model_config = ConfigDict(extra="forbid")

    config: str = Field(str(DEFAULT_CONFIG), description="YAML config file (configs/cpu.yaml by default).")


def expert_deployment_name(expert: str) -> str:
    return f"expert_{expert}"


def _learner_link(config: AppConfig) -> dict | None:
    """How router replicas find the learner to pull new weights from (None: no online learning)."""
    if config.learner is None:
        return None
    ls = config.learner
    return {"actor_name": ls.actor_name, "namespace": ls.namespace, "poll_interval_s": ls.poll_interval_s}


def build_app(config: AppConfig) -> Application:
    """Ingress -> embedding -> router -> one deployment per expert."""
    catalog = config.catalog
    emb = config.embedding
    embedder = serve.deployment(
        EmbeddingDeployment,
        name="embedding",
        num_replicas=emb.num_replicas,
        ray_actor_options={"num_cpus": emb.num_cpus, "num_gpus": emb.num_gpus},
        max_ongoing_requests=4 * emb.max_batch_size,
    ).bind(
        emb.model, emb.max_length, emb.device, emb.max_batch_size, emb.batch_wait_timeout_s, emb.threads, emb.runtime
    )

    rc = config.router
    router = serve.deployment(
        RouterDeployment,
        name="router",
        num_replicas=rc.num_replicas,
        ray_actor_options={"num_cpus": rc.num_cpus},
        max_ongoing_requests=4 * rc.max_batch_size,
    ).bind(
        catalog,
        rc.strategies,
        rc.default_strategy,
        rc.default_weights.model_dump(),
        rc.max_batch_size,
        rc.batch_wait_timeout_s,
        _learner_link(config),
    )

    experts = {
        spec.name: serve.deployment(
            ExpertDeployment,
            name=expert_deployment_name(spec.name),
            num_replicas=spec.num_replicas,
            ray_actor_options={"num_cpus": spec.num_cpus, "num_gpus": spec.num_gpus},
            max_ongoing_requests=64,
        ).bind(spec, config.carbon.country_iso_code, config.carbon.measure_with_codecarbon)
        for spec in catalog.experts
    }

    srv = config.server
    ingress = serve.deployment(
        Ingress,
        name="ingress",
        num_replicas=srv.num_replicas,
        ray_actor_options={"num_cpus": srv.num_cpus},
        max_ongoing_requests=256,
    )
    return ingress.bind(config.model_dump(mode="json"), embedder, router, experts)


def graph(args: GraphArgs) -> Application:
    """`serve run serve_app:graph [config=configs/gpu.yaml]`."""
    if isinstance(args, dict):
        args = GraphArgs.model_validate(args)
    return build_app(load_config(args.config))
