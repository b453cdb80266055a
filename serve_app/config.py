"""The one typed configuration of a deployment, loaded from YAML. Unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from experts.catalog import ExpertCatalog, ExpertSpec
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import OFFLINE_ONLY, STRATEGIES
from training.online.learner import LearnerConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "cpu.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ServerConfig(_Strict):
    """The HTTP ingress."""

    max_prompt_chars: int = Field(32_000, gt=0, description="Requests whose messages exceed this are refused.")
    max_messages: int = Field(256, gt=0)
    request_timeout_s: float = Field(300.0, gt=0, description="Time allowed for one expert call.")
    failover: bool = Field(True, description="Retry a routed request on the next-best expert if one fails.")
    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.1, ge=0)


class EmbeddingConfig(_Strict):
    """The embedding deployment: a BERT-family encoder shared by every strategy."""

    model: str = Field("packaged:all-minilm-l6-v2", description="Hub id, local path or packaged:<name>.")
    max_length: int = Field(256, gt=0, description="Tokens kept, counted from the end of the prompt.")
    device: str = Field("auto", description="'auto' uses a GPU when the replica has one.")
    num_replicas: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0, description="Fraction of a GPU per replica (0 on CPU machines).")
    num_cpus: float = Field(0.5, ge=0)
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="How long a batch waits to fill.")
    threads: int | None = Field(
        None, gt=0, description="CPU threads for the encoder; default: every core of the node (ignored on GPU)."
    )
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="CPU runtime: 'auto' = ONNX Runtime when the model exports cleanly, else PyTorch."
    )


class RouterConfig(_Strict):
    """The router deployment and the strategies it serves."""

    default_strategy: str = "dummy"
    strategies: dict[str, dict] = Field(
        default_factory=lambda: {"dummy": {}},
        description="Enabled strategies by registry name, each with its own config.",
    )
    default_weights: ObjectiveWeights = Field(default_factory=ObjectiveWeights)
    num_replicas: int = Field(1, ge=1)
    num_cpus: float = Field(0.25, ge=0)
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _known_strategies(self) -> RouterConfig:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}. Available strategies are {sorted(STRATEGIES)}")
        offline = sorted(OFFLINE_ONLY & set(self.strategies))
        if offline:
            raise ValueError(
                f"strategies {offline} are offline references (they read true outcomes or task labels that a "
                f"request does not carry): use them in `routerllm bench`, not in a served router"
            )
        if self.default_strategy not in self.strategies:
            raise ValueError(
                f"default_strategy {self.default_strategy!r} is not enabled; enabled: {sorted(self.strategies)}"
            )
        return self


class CarbonConfig(_Strict):
    """How energy becomes emissions."""

    country_iso_code: str = Field("USA", min_length=3, max_length=3, description="For codecarbon's offline mode.")
    grid_intensity_g_per_kwh: float = Field(400.0, gt=0, description="gCO2eq per kWh for per-request estimates.")
    measure_with_codecarbon: bool = Field(True, description="Measure each expert replica's energy with codecarbon.")
    measure_interval_s: float = Field(15.0, gt=0)


class LearnerSettings(_Strict):
    """The online learner actor and how router replicas reach it (absent: no online learning)."""

    actor_name: str = Field("routerllm-learner", description="Name of the detached learner actor.")
    namespace: str = Field("routerllm", description="Ray namespace of the learner actor.")
    num_cpus: float = Field(0.5, ge=0)
    poll_interval_s: float = Field(0.2, gt=0, description="How often router replicas check for a new version.")
    record_timeout_s: float = Field(5.0, gt=0, description="Time allowed to record an outcome or a feedback.")
    training: LearnerConfig


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
        reserved = {"router"} & {e.name for e in self.experts}
        if reserved:
            raise ValueError("'router' is reserved for routed requests and cannot name an expert")
        return self

    @property
    def catalog(self) -> ExpertCatalog:
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
