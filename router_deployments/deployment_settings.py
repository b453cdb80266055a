"""Typed settings of the embedding and router deployments: the `embedding` and `router` sections of the YAML.

Each deployment takes its settings object whole, and the object computes the deployment's Serve options
(experts.replica_settings). No Ray import here: serve_app.config composes these into the app's schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from experts.replica_settings import ReplicaSettings
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import OFFLINE_ONLY, STRATEGIES

# Serve may hand a batching replica this many batches' worth of requests at once, so one batch fills while the
# previous one runs.
BATCHES_IN_FLIGHT = 4


class EmbeddingConfig(ReplicaSettings):
    """The embedding deployment: a BERT-family encoder shared by every strategy."""

    model: str = Field("packaged:all-minilm-l6-v2", description="Hub id, local path or packaged:<name>.")
    max_length: int = Field(256, gt=0, description="Tokens kept, counted from the end of the prompt.")
    device: str = Field("auto", description="'auto' uses a GPU when the replica has one.")
    num_gpus: float = Field(0.0, ge=0, description="Fraction of a GPU per replica (0 on CPU machines).")
    max_batch_size: int = Field(
        32, ge=1, description="Most prompts per forward pass (a router's batch is cut to it) and per `embed` batch."
    )
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="How long a batch of `embed` calls waits to fill.")
    threads: int | None = Field(
        None, gt=0, description="CPU threads for the encoder; default: every core of the node (ignored on GPU)."
    )
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="CPU runtime: 'auto' = ONNX Runtime when the model exports cleanly, else PyTorch."
    )

    @property
    def deployment_name(self) -> str:
        """'embedding'."""
        return "embedding"

    def default_max_ongoing_requests(self) -> int:
        """BATCHES_IN_FLIGHT x max_batch_size."""
        return BATCHES_IN_FLIGHT * self.max_batch_size


class RouterConfig(ReplicaSettings):
    """The router deployment and the strategies it serves."""

    default_strategy: str = "dummy"
    strategies: dict[str, dict] = Field(
        default_factory=lambda: {"dummy": {}},
        description="Enabled strategies by registry name, each with its own config.",
    )
    default_weights: ObjectiveWeights = Field(default_factory=ObjectiveWeights)
    num_cpus: float = Field(0.25, ge=0, description="CPUs per replica.")
    max_batch_size: int = Field(
        32, ge=1, description="Most queries per routing batch: embedded in one call, then scored per strategy."
    )
    batch_wait_timeout_s: float = Field(0.0, ge=0, description="How long a routing batch waits to fill.")

    @property
    def deployment_name(self) -> str:
        """'router'."""
        return "router"

    def default_max_ongoing_requests(self) -> int:
        """BATCHES_IN_FLIGHT x max_batch_size."""
        return BATCHES_IN_FLIGHT * self.max_batch_size

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


class LearnerLink(BaseModel):
    """How router replicas find the online learner actor to pull new weights from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor_name: str
    namespace: str
    poll_interval_s: float = Field(0.2, gt=0)
