"""The one typed configuration of a deployment, loaded from YAML. Unknown keys are errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from experts.carbon_meter import CarbonConfig
from experts.catalog import ExpertCatalog, ExpertSpec
from experts.replica_settings import ReplicaSettings
from router_deployments.deployment_settings import EmbeddingConfig, LearnerLink, RouterConfig
from serve_app.budget_ledger import BudgetLimits
from training.online.learner_config import LearnerConfig

__all__ = [
    "DEFAULT_CONFIG",
    "REPO_ROOT",
    "ROUTER_MODEL",
    "AppConfig",
    "BudgetConfig",
    "AuthSettings",
    "CarbonConfig",
    "CircuitBreakerConfig",
    "ConfigError",
    "EmbeddingConfig",
    "LearnerSettings",
    "LearnerStorageError",
    "RateLimitSettings",
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
# Where the learner keeps its outcome store and policy versions when the YAML names no paths: outside the
# repository, so a `git clean` or a fresh checkout never loses what was learnt.
DATA_DIR_ENV = "ROUTERLLM_DATA_DIR"
DEFAULT_DATA_DIR = "~/.local/share/routerllm"
STORE_FILE = "outcomes.db"
POLICIES_DIR = "policies"


def resolve_data_dir(data_dir: str | None) -> Path:
    """The learner's data directory: `data_dir`, else $ROUTERLLM_DATA_DIR, else ~/.local/share/routerllm."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def absolute_path(path: str) -> str:
    """`path` with ~ expanded, relative to the directory the graph is started from (replicas run elsewhere)."""
    return str(Path(path).expanduser().resolve())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class CircuitBreakerConfig(_Strict):
    """Per expert: open (skip it) after `failures` failed calls within `window_s`, stay open `cooldown_s`, then let
    one probe call through (half-open): its success closes the circuit, its failure opens it again."""

    enabled: bool = Field(True, description="Whether failing experts are skipped at all.")
    failures: int = Field(5, ge=1, description="Failed calls within the window that open the circuit.")
    window_s: float = Field(30.0, gt=0, description="How far back failures are counted.")
    cooldown_s: float = Field(10.0, gt=0, description="How long an open circuit skips its expert before a probe.")


class ServerConfig(ReplicaSettings):
    """The HTTP ingress."""

    max_prompt_chars: int = Field(32_000, gt=0, description="Requests whose messages exceed this are refused.")
    max_messages: int = Field(256, gt=0)
    request_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Time allowed for one attempt of an expert call: a whole answer, or a stream's first piece.",
    )
    request_deadline_s: float = Field(
        600.0,
        gt=0,
        description="Time allowed for the whole chain of one request (every retry, failover and the whole stream), "
        "from its arrival; what is left of it bounds each attempt.",
    )
    stream_idle_timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for a stream's next piece once it has started; a stall ends it."
    )
    retries: int = Field(
        1, ge=0, le=5, description="Retries of one expert on a transient error (timeout, unreachable, 429, 5xx)."
    )
    retry_backoff_s: float = Field(
        0.2, ge=0, description="Wait before the first retry; doubled for each next one (with jitter)."
    )
    failover: bool = Field(True, description="Retry a routed request on the next-best expert if one fails.")
    circuit_breaker: CircuitBreakerConfig = Field(
        default_factory=CircuitBreakerConfig, description="When an expert is skipped for failing (per ingress replica)."
    )
    max_tokens: int = Field(4096, gt=0, description="Most tokens a request may ask an expert to generate.")
    max_stop_sequences: int = Field(4, ge=0, description="Most `stop` strings a request may give (OpenAI's 4).")
    max_stop_chars: int = Field(64, gt=0, description="Longest `stop` string a request may give.")
    num_cpus: float = Field(0.1, ge=0, description="CPUs per replica.")

    @property
    def deployment_name(self) -> str:
        """'ingress'."""
        return "ingress"

    def default_max_ongoing_requests(self) -> int:
        """INGRESS_MAX_ONGOING_REQUESTS."""
        return INGRESS_MAX_ONGOING_REQUESTS


class AuthSettings(_Strict):
    """API keys. The keys themselves never sit in the YAML: they come from $ROUTERLLM_API_KEYS and
    $ROUTERLLM_ADMIN_KEYS (comma lists) and from `keys_file`, a file of their SHA-256 hashes (serve_app/auth.py)."""

    keys_file: str | None = Field(
        None,
        description="File of hashed keys, one per line: `user <sha256 hex>` or `admin <sha256 hex>` (# comments); "
        "combined with the keys of the environment. Relative to the directory the graph is started from.",
    )
    min_key_chars: int = Field(20, ge=1, description="Shortest key accepted from the environment (refused at start).")

    @model_validator(mode="after")
    def _absolute_keys_file(self) -> AuthSettings:
        if self.keys_file:
            self.keys_file = absolute_path(self.keys_file)
        return self


class RateLimitSettings(_Strict):
    """Per-key rate limits, shared by every ingress replica through one Ray actor (serve_app/rate_limits.py). They
    apply to keyed callers; a graph without keys has no callers to tell apart and is not limited."""

    requests_per_min: int | None = Field(600, gt=0, description="Requests per minute per key (None: no limit).")
    tokens_per_min: int | None = Field(
        200_000, gt=0, description="Prompt + completion tokens per minute per key, charged once answered."
    )
    feedback_per_min: int | None = Field(120, gt=0, description="Feedback scores per minute per key.")
    actor_name: str = Field("routerllm-rate-limits", description="Name of the detached limiter actor.")
    namespace: str = Field("routerllm", description="Ray namespace of the limiter actor.")
    timeout_s: float = Field(
        1.0, gt=0, description="Time allowed for one limiter call; past it the request goes through (logged)."
    )


class LearnerStorageError(ValueError):
    """The learner's data directory cannot be created or written."""


class LearnerSettings(_Strict):
    """The online learner actor and how router replicas reach it (absent: no online learning)."""

    actor_name: str = Field("routerllm-learner", description="Name of the detached learner actor.")
    namespace: str = Field("routerllm", description="Ray namespace of the learner actor.")
    num_cpus: float = Field(
        0.1, ge=0, description="CPUs reserved for the actor (small networks, mostly idle: a tenth is enough)."
    )
    poll_interval_s: float = Field(0.2, gt=0, description="How often router replicas check for a new version.")
    record_timeout_s: float = Field(5.0, gt=0, description="Time allowed to record an outcome or a feedback.")
    ready_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long the ingress waits at start for the learner actor to answer (Serve "
        "retries a failed ingress twice, so a learner that cannot be placed fails the graph after 3 x this).",
    )
    data_dir: str | None = Field(
        None,
        description=f"Directory of the outcome store ({STORE_FILE}) and policy versions ({POLICIES_DIR}/) when "
        f"training sets no store_path / checkpoint_dir; default ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR}. "
        "Created on first start.",
    )
    pin_to_storage_node: bool = Field(
        True,
        description="Place the learner (and every restart of it) on the node whose disk holds its store and "
        "policy versions: the node that deploys the graph, unless storage_node_ip names one. If that node dies "
        "the learner cannot restart elsewhere: serving goes on with the last published policies, feedback is "
        "refused with 503, and the learner resumes when a node with that IP and disk returns.",
    )
    storage_node_ip: str | None = Field(
        None,
        description="IP of the Ray node that holds data_dir (default: the node that deploys the graph, filled in "
        "by prepare_storage).",
    )
    training: LearnerConfig

    @model_validator(mode="before")
    @classmethod
    def _paths_under_data_dir(cls, data: Any) -> Any:
        """Fill the training section's missing store_path and checkpoint_dir from the data directory."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        training = data.get("training") or {}
        training = dict(training.model_dump() if isinstance(training, BaseModel) else training)
        root = resolve_data_dir(data.get("data_dir"))
        data["data_dir"] = str(root)
        training.setdefault("store_path", str(root / STORE_FILE))
        training.setdefault("checkpoint_dir", str(root / POLICIES_DIR))
        if training["store_path"] != ":memory:":
            training["store_path"] = absolute_path(training["store_path"])
        training["checkpoint_dir"] = absolute_path(training["checkpoint_dir"])
        data["training"] = training
        return data

    def prepare_storage(self) -> None:
        """Create the store's directory and the checkpoint root (first start) on this node, and remember this
        node as the learner's home (pin_to_storage_node); a clear error when impossible."""
        if self.pin_to_storage_node and self.storage_node_ip is None:
            from ray.util import get_node_ip_address  # here, not at import: reading a config never imports Ray

            self.storage_node_ip = get_node_ip_address()
        dirs = [Path(self.training.checkpoint_dir)]
        if self.training.store_path != ":memory:":
            dirs.insert(0, Path(self.training.store_path).parent)
        for d in dirs:
            try:
                d.mkdir(parents=True, exist_ok=True)
                probe = d / ".routerllm-write-check"
                probe.touch()
                probe.unlink()
            except OSError as e:
                raise LearnerStorageError(
                    f"cannot create the learner's data directory {d}: {e.strerror or e}. Set learner.data_dir "
                    f"(or ${DATA_DIR_ENV}) to a writable directory, or learner.training.store_path/checkpoint_dir"
                ) from e

    def link(self) -> LearnerLink:
        """What a router replica needs to pull new weights from the actor."""
        return LearnerLink(actor_name=self.actor_name, namespace=self.namespace, poll_interval_s=self.poll_interval_s)


class BudgetConfig(_Strict):
    """Carbon and cost budgets kept on the server over a rolling window (serve_app.budgets, budget_ledger)."""

    window_s: float = Field(3600.0, gt=0, description="Length of the rolling window the limits apply to.")
    total: BudgetLimits = Field(default_factory=BudgetLimits, description="Limits on all traffic together.")
    per_caller: BudgetLimits = Field(
        default_factory=BudgetLimits, description="Limits on each caller (the request's `user` field) alone."
    )
    on_exhausted: Literal["refuse", "greenest"] = Field(
        "refuse",
        description="When nothing fits: 'refuse' answers 429 budget_exceeded with Retry-After; 'greenest' routes to "
        "the expert with the least predicted carbon anyway (the metadata says over_budget).",
    )
    tight_fraction: float = Field(
        0.5, gt=0, le=1, description="Below this fraction left, the carbon / cost weights rise (steering)."
    )
    steer_carbon_weight: float = Field(1.0, ge=0, description="Added to the carbon weight when the budget is spent.")
    steer_cost_weight: float = Field(1.0, ge=0, description="Added to the cost weight when the budget is spent.")
    chars_per_token: float = Field(
        3.0, gt=0, description="Prompt characters per token when predicting a call's charge (low: over-reserves)."
    )
    state_ttl_s: float = Field(
        0.2, ge=0, description="How long an ingress reuses a caller's budget state for routing features."
    )
    reservation_ttl_s: float = Field(600.0, gt=0, description="An open reservation older than this expires.")
    actor_name: str = Field("routerllm-budgets", description="Name of the ledger actor every ingress shares.")
    namespace: str = Field("routerllm", description="Ray namespace of the ledger actor.")

    @property
    def limited(self) -> bool:
        """Whether any limit is set (no limit: no ledger, nothing reserved)."""
        return any(v is not None for v in (*self.total.model_dump().values(), *self.per_caller.model_dump().values()))


class AppConfig(_Strict):
    """Everything one RouterLLM graph needs."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    router: RouterConfig = Field(default_factory=RouterConfig)
    carbon: CarbonConfig = Field(default_factory=CarbonConfig)
    experts: list[ExpertSpec] = Field(min_length=1)
    learner: LearnerSettings | None = None
    budgets: BudgetConfig = Field(default_factory=BudgetConfig, description="Carbon and cost budgets (none set).")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: RateLimitSettings = Field(default_factory=RateLimitSettings)

    @model_validator(mode="after")
    def _learner_trains_what_the_router_serves(self) -> AppConfig:
        """The learner trains the network the router serves: same strategy config, and one starting checkpoint
        (router.strategies.<name>.checkpoint or learner...warm_start; either line warm-starts both)."""
        for cfg in self.router.strategies.values():
            if cfg.get("checkpoint"):
                cfg["checkpoint"] = absolute_path(cfg["checkpoint"])
        if not self.learner:
            return self
        missing = sorted(set(self.learner.training.strategies) - set(self.router.strategies))
        if missing:
            raise ValueError(f"learner trains {missing}, which router.strategies does not enable")
        for name, training in self.learner.training.strategies.items():
            served = self.router.strategies[name]
            checkpoint = served.get("checkpoint")
            warm = absolute_path(training.warm_start) if training.warm_start else None
            if checkpoint and warm and checkpoint != warm:
                raise ValueError(
                    f"router.strategies.{name}.checkpoint ({checkpoint}) and learner.training.strategies.{name}"
                    f".warm_start ({warm}) differ: give one of them"
                )
            training.warm_start = warm or checkpoint
            if training.warm_start:
                served["checkpoint"] = training.warm_start
            own = {k: v for k, v in served.items() if k != "checkpoint"}
            training.config = {**own, **training.config}
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

    def cpu_reservations(self) -> dict[str, float]:
        """CPUs each part reserves from Ray (replicas x num_cpus), in start order; the learner's last. Their sum
        must fit the cluster, or a part waits unplaced."""
        parts: dict[str, float] = {
            "ingress": self.server.num_replicas * self.server.num_cpus,
            "embedding": self.embedding.num_replicas * self.embedding.num_cpus,
            "router": self.router.num_replicas * self.router.num_cpus,
        }
        for spec in self.experts:
            parts[spec.deployment_name] = spec.num_replicas * spec.num_cpus
        if self.learner is not None:
            parts["learner"] = self.learner.num_cpus
        return parts

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
