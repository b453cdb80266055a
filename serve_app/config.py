"""The one typed configuration of a deployment, loaded from YAML. Unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from experts.carbon_meter import CarbonConfig
from experts.catalog import ExpertCatalog, ExpertSpec
from experts.replica_settings import ReplicaSettings
from router_deployments.deployment_settings import EmbeddingConfig, LearnerLink, RouterConfig
from training.online.learner_config import LearnerConfig

__all__ = [
    "DEFAULT_CONFIG",
    "REPO_ROOT",
    "ROUTER_MODEL",
    "AppConfig",
    "CarbonConfig",
    "ConfigError",
    "EmbeddingConfig",
    "LearnerSettings",
    "RouterConfig",
    "ServerConfig",
    "load_config",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "cpu.yaml"

# The `model` of a chat request that asks to be routed; any other model names an expert directly.
ROUTER_MODEL = "router"
# Requests one ingress replica takes at once when the YAML sets none: it mostly awaits its handle calls.
INGRESS_MAX_ONGOING_REQUESTS = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ServerConfig(ReplicaSettings):
    """The HTTP ingress."""

    max_prompt_chars: int = Field(32_000, gt=0, description="Requests whose messages exceed this are refused.")
    max_messages: int = Field(256, gt=0)
    request_timeout_s: float = Field(300.0, gt=0, description="Time allowed for one expert call.")
    failover: bool = Field(True, description="Retry a routed request on the next-best expert if one fails.")
    num_cpus: float = Field(0.1, ge=0, description="CPUs per replica.")

    @property
    def deployment_name(self) -> str:
        """'ingress'."""
        return "ingress"

    def default_max_ongoing_requests(self) -> int:
        """INGRESS_MAX_ONGOING_REQUESTS."""
        return INGRESS_MAX_ONGOING_REQUESTS


class LearnerSettings(_Strict):
    """The online learner actor and how router replicas reach it (absent: no online learning)."""

    actor_name: str = Field("routerllm-learner", description="Name of the detached learner actor.")
    namespace: str = Field("routerllm", description="Ray namespace of the learner actor.")
    num_cpus: float = Field(0.5, ge=0)
    poll_interval_s: float = Field(0.2, gt=0, description="How often router replicas check for a new version.")
    record_timeout_s: float = Field(5.0, gt=0, description="Time allowed to record an outcome or a feedback.")
    training: LearnerConfig

    def link(self) -> LearnerLink:
        """What a router replica needs to pull new weights from the actor."""
        return LearnerLink(actor_name=self.actor_name, namespace=self.namespace, poll_interval_s=self.poll_interval_s)


class AppConfig(_Strict):
    """Everything one RouterLLM graph needs."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    carbon: CarbonConfig = Field(default_factory=CarbonConfig)
    experts: list[ExpertSpec] = Field(min_length=1)
    learner: LearnerSettings | None = None

    @model_validator(mode="after")
    def _learned_strategies_are_served(self) -> AppConfig:
        if self.learner:
            missing = sorted(set(self.learner.training.strategies) - set(self.router.strategies))
            if missing:
                raise ValueError(f"learner trains {missing}, which router.strategies does not enable")
        return self

    @model_validator(mode="after")
    def _unique_experts(self) -> AppConfig:
        self.catalog  # noqa: B018 - validates names
        if ROUTER_MODEL in {e.name for e in self.experts}:
            raise ValueError(f"{ROUTER_MODEL!r} is reserved for routed requests and cannot name an expert")
        return self

    def deployment_options(self) -> dict[str, Any]:
        """The ingress's Serve options (the `server` section's): the ingress takes the whole config, since it
        answers for the whole graph."""
        return self.server.deployment_options()

    @property
    def catalog(self) -> ExpertCatalog:
        """The experts with the grid intensity that turns their energy into emissions."""
        return ExpertCatalog(experts=self.experts, carbon_intensity_g_per_kwh=self.carbon.grid_intensity_g_per_kwh)


class ConfigError(ValueError):
    """The configuration file is missing, not YAML, or does not match the schema."""


def load_config(path: str | Path | None = None) -> AppConfig:
    """Read and validate a YAML config; relative paths are tried from the CWD, then from the repository."""
    p = Path(path) if path else DEFAULT_CONFIG
    if not p.is_file() and not p.is_absolute() and (REPO_ROOT / p).is_file():
        p = REPO_ROOT / p
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
    try:
        return AppConfig.model_validate(raw or {})
    except ValidationError as e:
        raise ConfigError(f"config file {p} is invalid:\n{e}") from e
