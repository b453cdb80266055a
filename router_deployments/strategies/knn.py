"""RouterBench's kNN router: an expert's quality on a prompt is its mean score on the k most similar known prompts.

The index (unit embeddings and per-expert scores of the training prompts) is the whole model; it is fitted once
with `fit` and checkpointed like any learned weights, so a served kNN router needs no training data at hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from experts.catalog import ExpertCatalog
from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig


class KnnConfig(StrategyConfig):
    """How many neighbours the kNN router averages."""

    # 80: leave-one-out on the training split of RouterBench (seed4 and mix4), AIQ grows up to k=80 and is flat
    # beyond (10: 0.478/0.788, 40: 0.497/0.823, 80: 0.504/0.825, 160: 0.505/0.825).
    k: int = Field(80, gt=0, description="Neighbours averaged per prompt (capped at the index size).")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class KnnStrategy(RoutingStrategy):
    """Predicts each expert's quality by cosine kNN over training prompts, then maximises the weighted utility."""

    name = "knn"
    Config = KnnConfig

    def __init__(self, catalog: ExpertCatalog, config: KnnConfig | None = None):
        super().__init__(catalog, config)
        self.embeddings: np.ndarray | None = None
        self.scores: np.ndarray | None = None

    def fit(self, embeddings: np.ndarray, scores: np.ndarray) -> KnnStrategy:
        """Index training prompts: embeddings [N, dim] and each expert's recorded score [N, n_experts]."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        scores = np.asarray(scores, dtype=np.float32)
        self._check_index(embeddings, scores)
        self.embeddings = _unit_rows(embeddings)
        self.scores = scores
        self.policy_version += 1
        return self

    def _check_index(self, embeddings: np.ndarray, scores: np.ndarray) -> None:
        if embeddings.ndim != 2 or scores.ndim != 2:
            raise ValueError(f"expected 2-D embeddings and scores, got {embeddings.shape} and {scores.shape}")
        if len(embeddings) == 0 or len(embeddings) != len(scores):
            raise ValueError(f"need as many (>0) embeddings as score rows, got {len(embeddings)}, {len(scores)}")
        if scores.shape[1] != len(self.catalog):
            raise ValueError(f"scores have {scores.shape[1]} columns for {len(self.catalog)} experts")
        if not (np.isfinite(embeddings).all() and np.isfinite(scores).all()):
            raise ValueError("embeddings and scores must be finite")

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        """Mean score of each expert over the k nearest indexed prompts: [batch, n_experts]."""
        if self.embeddings is None or self.scores is None:
            raise RuntimeError("the knn router has no index: call fit() or load a checkpoint first")
        queries = _unit_rows(np.atleast_2d(np.asarray(embeddings, dtype=np.float32)))
        if queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"embedding dim {queries.shape[1]} != index dim {self.embeddings.shape[1]}")
        k = min(self.config.k, len(self.embeddings))
        distances = -(queries @ self.embeddings.T)
        # Only the set of the k nearest matters for the mean; argpartition finds it in linear time and, being
        # deterministic, picks the same prompts among tied distances on every run.
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        return self.scores[nearest].mean(axis=1)

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Utility of each expert from its mean outcome over the nearest training prompts."""
        # float64: the tie-break is below float32 resolution near 1.
        quality = self.predict_quality(np.stack([c.embedding for c in contexts])).astype(np.float64)
        return np.stack([self.profile.utility(q, c.weights, break_ties=True) for q, c in zip(quality, contexts)])

    # --- checkpoint -------------------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """k and the metric."""
        return {"k": self.config.k, "metric": "cosine"}

    def state_dict(self) -> dict[str, Any]:
        """The index: unit embeddings and their per-expert scores."""
        import torch

        if self.embeddings is None or self.scores is None:
            raise RuntimeError("the knn router has no index to save: call fit() first")
        return {"embeddings": torch.from_numpy(self.embeddings), "scores": torch.from_numpy(self.scores)}

    def load_state_dict(self, state: dict[str, Any], version: int | None = None) -> None:
        """Load and check the index; `version` becomes the policy version."""
        embeddings = np.asarray(state["embeddings"].float().numpy(), dtype=np.float32)
        scores = np.asarray(state["scores"].float().numpy(), dtype=np.float32)
        self._check_index(embeddings, scores)
        self.embeddings, self.scores = _unit_rows(embeddings), scores
        self.policy_version = version if version is not None else self.policy_version + 1
