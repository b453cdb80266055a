"""The replica and resource fields every deployment's settings share, and the Serve options they compute.

It sits in `experts/`, the bottom layer, so that each settings type can live beside what it configures
(ExpertSpec here, the embedding and router settings in router_deployments, the ingress's in serve_app) and still
share it. Nothing here imports Ray: the builder hands `deployment_options()` to `serve.deployment` (the pattern
of Ray Serve LLM, whose deployments compute their own options from a typed config).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class DeploymentSettings(Protocol):
    """What the builder needs of a deployment's settings: the Serve options they compute."""

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of `serve.deployment(cls, **options)`."""
        ...


class ReplicaSettings(BaseModel, ABC):
    """Replicas, CPUs, GPUs and request concurrency of one Serve deployment, all from YAML."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    num_replicas: int = Field(1, ge=1, description="Replicas of this deployment.")
    num_cpus: float = Field(0.5, ge=0, description="CPUs per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; a fraction shares one GPU.")
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="Requests one replica takes at once (Serve queues the rest); unset: see each type."
    )

    @property
    @abstractmethod
    def deployment_name(self) -> str:
        """The Serve deployment's name within the application."""

    @abstractmethod
    def default_max_ongoing_requests(self) -> int:
        """What `max_ongoing_requests` is when the YAML leaves it unset."""

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments of `serve.deployment(cls, **options)` for this deployment."""
        return {
            "name": self.deployment_name,
            "num_replicas": self.num_replicas,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "max_ongoing_requests": self.max_ongoing_requests or self.default_max_ongoing_requests(),
        }
