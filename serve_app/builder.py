"""Builds the Serve application from config: each deployment takes its typed settings whole, and the settings
compute the deployment's Serve options (replicas, CPUs, GPUs, concurrency), all from the YAML.

The shape is Ray Serve LLM's `build_llm_deployment`: `serve.deployment(cls, **options).bind(settings, **kwargs)`.
"""

# No `from __future__ import annotations` here: Serve reads the builder's argument type at run time.

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from experts.expert_deployment import ExpertDeployment
from experts.replica_settings import DeploymentSettings
from router_deployments.embedding_deployment import EmbeddingDeployment
from router_deployments.router_deployment import RouterDeployment
from serve_app.auth import load_key_ring
from serve_app.config import DEFAULT_CONFIG, AppConfig, load_config
from serve_app.ingress import Ingress


class GraphArgs(BaseModel):
    """Arguments of `serve run serve_app:graph key=value ...`."""

    model_config = ConfigDict(extra="forbid")

    config: str = Field(str(DEFAULT_CONFIG), description="YAML config file (configs/cpu.yaml by default).")


def deploy(cls: type, settings: DeploymentSettings, **kwargs: Any) -> Application:
    """`cls` as a Serve deployment with the options its settings compute, bound to the settings and `kwargs`
    (handles, the catalog)."""
    return serve.deployment(cls, **settings.deployment_options()).bind(settings, **kwargs)


def build_app(config: AppConfig) -> Application:
    """Ingress -> router (-> embedding) -> one deployment per expert."""
    catalog = config.catalog
    learner = None
    if config.learner is not None:
        config.learner.prepare_storage()  # here, where an unwritable data dir is one clear error, not a dead actor
        learner = config.learner.link()
    experts = {spec.name: deploy(ExpertDeployment, spec, carbon=config.carbon) for spec in catalog.experts}
    embedder = deploy(EmbeddingDeployment, config.embedding)
    router = deploy(RouterDeployment, config.router, catalog=catalog, embedder=embedder, learner=learner)
    # The keys are read here, in the process that builds the graph; the replicas get their digests only.
    keys = load_key_ring(config.auth)
    return deploy(Ingress, config, router=router, experts=experts, keys=keys)


def graph(args: GraphArgs) -> Application:
    """`serve run serve_app:graph [config=configs/gpu.yaml]`."""
    if isinstance(args, dict):
        args = GraphArgs.model_validate(args)
    return build_app(load_config(args.config))
