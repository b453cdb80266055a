"""The routing-strategy interface every strategy implements, and the records it consumes and produces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from experts.catalog import ExpertCatalog
from router_deployments.checkpoints import CheckpointError, field_diff, load_checkpoint, save_checkpoint
from router_deployments.objectives import ExpertProfile, ObjectiveWeights


class StrategyConfig(BaseModel):
    """Base of every strategy's config: unknown keys are errors, not silent defaults."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    checkpoint: str | None = None
    """Directory of a checkpoint to load at start (learnable strategies only)."""


@dataclass
class RouteContext:
    """What a strategy sees of one request."""

    text: str
    embedding: np.ndarray
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    carbon_budget_left: float = 1.0
    """Fraction of the carbon budget still unspent, in [0, 1]."""
    cost_budget_left: float = 1.0
    """Fraction of the USD budget still unspent, in [0, 1]."""
    window_left: float = 1.0
    """Fraction of the budget window still to come, in [0, 1] (1.0: the window has just begun, or no budget)."""
    grid_intensity: float | None = None
    """Grid carbon intensity now, gCO2eq/kWh (None: the config's constant)."""


# The strategy name of a decision no strategy made: the request named its expert (model = an expert's name).
DIRECT = "direct"


@dataclass
class RoutingDecision:
    """Where one request goes and why; the one type from the strategy through the router deployment to the
    ingress's response, headers, metrics and outcome records."""

    expert: str
    confidence: float
    scores: dict[str, float]
    strategy: str
    policy_version: int | None
    """Published policy version that decided (None for a direct request)."""
    fanout: list[str]
    """Experts to call: [expert] for most strategies, the top-k for a sparse mixture."""
    probs: list[float] | None = None
    """Probability the strategy gave each expert, in catalog order (for learning from logged decisions)."""

    @classmethod
    def direct(cls, expert: str) -> RoutingDecision:
        """The decision for a request that named its expert: that expert alone, certain, no scores."""
        return cls(expert=expert, confidence=1.0, scores={}, strategy=DIRECT, policy_version=None, fanout=[expert])

    @property
    def is_direct(self) -> bool:
        """True when no strategy ran (the request named its expert)."""
        return self.strategy == DIRECT


@dataclass
class Experience:
    """One observed outcome, the unit of online learning."""

    embedding: np.ndarray
    expert: int
    reward: float
    quality: float
    cost_usd: float = 0.0
    carbon_g: float = 0.0
    latency_s: float = 0.0
    carbon_budget_left: float = 1.0
    window_left: float = 1.0


def softmax(x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis at `temperature`."""
    z = x / max(temperature, 1e-6)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class RoutingStrategy(ABC):
    """Scores every expert for a batch of requests; learnable strategies also learn and checkpoint."""

    name: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]] = StrategyConfig
    learnable: ClassVar[bool] = False
    # True when score() runs a transformer (milliseconds or more per batch): the router deployment then runs it in a
    # worker thread so that its event loop keeps taking requests. The small numpy/MLP strategies run inline, where
    # the hop to a thread would cost more than the scoring itself.
    runs_model: ClassVar[bool] = False

    def __init__(self, catalog: ExpertCatalog, config: StrategyConfig | None = None):
        self.catalog = catalog
        self.config = config if config is not None else self.Config()
        self.profile = ExpertProfile(catalog)
        self.policy_version = 0

    def setup(self) -> None:
        """Load models and checkpoints. Heavy work lives here, not in __init__."""
        if self.config.checkpoint:
            self.load(self.config.checkpoint)

    @abstractmethod
    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Return a [batch, n_experts] array, higher is better for that request."""

    def route_batch(self, contexts: list[RouteContext]) -> list[RoutingDecision]:
        """Pick the best-scoring expert for each request."""
        scores = np.asarray(self.score(contexts), dtype=np.float64)
        probs = softmax(scores)
        return [self._decision(s, p, [int(np.argmax(s))]) for s, p in zip(scores, probs)]

    def route(self, context: RouteContext) -> RoutingDecision:
        """Route one request (a batch of one)."""
        return self.route_batch([context])[0]

    def _decision(self, scores: np.ndarray, probs: np.ndarray, chosen: list[int]) -> RoutingDecision:
        names = self.catalog.names
        return RoutingDecision(
            expert=names[chosen[0]],
            confidence=float(probs[chosen[0]]),
            scores={n: float(s) for n, s in zip(names, scores)},
            strategy=self.name,
            policy_version=self.policy_version,
            fanout=[names[i] for i in chosen],
            probs=[float(p) for p in probs],
        )

    # --- learning (learnable strategies override) -------------------------------------------------------
    def learn(self, batch: list[Experience], weights: np.ndarray | None = None) -> dict[str, float]:
        """One online update from observed outcomes, each experience's loss scaled by `weights` (the replay's
        importance weights; None: all 1); returns training metrics."""
        raise NotImplementedError(f"strategy {self.name!r} does not learn online")

    def check_batch(self, batch: list[Experience]) -> None:
        """What learn() and errors() take: at least one experience, each naming an expert of the catalog."""
        if not batch:
            raise ValueError("learn() needs at least one experience")
        n = len(self.catalog)
        for e in batch:
            if not 0 <= e.expert < n:
                raise ValueError(f"experience names expert index {e.expert}, but there are {n} experts")

    def errors(self, batch: list[Experience]) -> np.ndarray | None:
        """|prediction error| of the current model on each experience, the replay's priorities (None: the strategy
        has none, and its replay is sampled uniformly)."""
        return None

    def observe(self, experiences: list[Experience]) -> dict[str, float]:
        """Take in new experiences exactly once (the learner calls it before the learn() batches, which may repeat
        experiences from replay): for models kept as sufficient statistics. Default: nothing to do."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Tensors to checkpoint (learnable strategies override)."""
        raise NotImplementedError(f"strategy {self.name!r} has no weights")

    def load_state_dict(self, state: dict[str, Any], version: int | None = None) -> None:
        """Load tensors from state_dict(); `version` becomes the policy version."""
        raise NotImplementedError(f"strategy {self.name!r} has no weights")

    def architecture(self) -> dict[str, Any]:
        """Everything needed to rebuild the network before loading weights."""
        return {}

    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write weights and a self-describing meta.json (strategy, experts and their table columns, architecture,
        version)."""
        meta = {
            "strategy": self.name,
            "experts": self.catalog.names,
            "columns": self.catalog.columns,
            "architecture": self.architecture(),
            "policy_version": self.policy_version,
            "metrics": metrics or {},
        }
        head = getattr(self, "head", None)
        if head is not None:
            meta["head"] = head.layout()
        return save_checkpoint(path, self.state_dict(), meta)

    def load(self, path: str | Path) -> dict[str, Any]:
        """Load a checkpoint written by save(), refusing another strategy, catalog or architecture."""
        catalog = self.catalog
        tensors, meta = load_checkpoint(path, strategy=self.name, experts=catalog.names, columns=catalog.columns)
        if meta.get("architecture") != self.architecture():
            raise CheckpointError(
                f"checkpoint {path} has architecture {meta.get('architecture')}, "
                f"but this {self.name} router is configured as {self.architecture()}"
            )
        head, theirs = getattr(self, "head", None), meta.get("head")
        if head is not None and isinstance(theirs, dict) and theirs != head.layout():
            raise CheckpointError(
                f"checkpoint {path} holds head statistics of another layout than this {self.name} router's head "
                f"({field_diff(theirs, head.layout())}); set the same head config, or rebuild the checkpoint with "
                "this one"
            )
        try:
            self.load_state_dict(tensors, version=int(meta.get("policy_version", 0)))
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit the {self.name} network: {e}") from e
        return meta
