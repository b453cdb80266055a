"""Objective weights and the per-expert figures that routing trades off (quality, cost, carbon, latency)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from experts.catalog import ExpertCatalog

# A typical request used to turn per-token prices and energy into per-call figures.
TYPICAL_TOKENS_IN = 200
TYPICAL_TOKENS_OUT = 200
# Utility taken off per unit of normalised cost by `utility(..., break_ties=True)`, so that equal utilities go to the
# cheaper expert. Far below any real difference of scores (1/k for a kNN mean, a probability step for a softmax).
TIE_BREAK = 1e-6


class ObjectiveWeights(BaseModel):
    """How much each objective counts. Quality is a gain; cost, carbon and latency are penalties."""

    model_config = ConfigDict(extra="forbid")

    quality: float = Field(1.0, ge=0)
    cost: float = Field(0.0, ge=0)
    carbon: float = Field(0.0, ge=0)
    latency: float = Field(0.0, ge=0)

    def as_array(self) -> np.ndarray:
        """[quality, cost, carbon, latency] as float32."""
        return np.array([self.quality, self.cost, self.carbon, self.latency], dtype=np.float32)


def merge_weights(
    defaults: ObjectiveWeights, requested: ObjectiveWeights | dict[str, float] | None
) -> ObjectiveWeights:
    """The weights a request routes with: the ones it set, the config's defaults for the rest.

    Only fields the request set count (pydantic's exclude_unset): `{"cost": 1.0}` keeps the default quality,
    carbon and latency weights instead of zeroing them with the class defaults. The one place weights merge.
    """
    if requested is None:
        return defaults
    if isinstance(requested, dict):
        requested = ObjectiveWeights.model_validate(requested)
    return defaults.model_copy(update=requested.model_dump(exclude_unset=True))


class ExpertProfile:
    """Per-expert figures from the catalog, each penalty scaled to [0, 1] by its largest value."""

    def __init__(self, catalog: ExpertCatalog):
        self.names = catalog.names
        self.quality = np.array([e.quality_prior for e in catalog.experts], dtype=np.float32)
        self.cost = np.array(
            [catalog.cost_usd(n, TYPICAL_TOKENS_IN, TYPICAL_TOKENS_OUT) for n in self.names], dtype=np.float32
        )
        self.carbon = np.array(
            [catalog.carbon_g(n, TYPICAL_TOKENS_IN, TYPICAL_TOKENS_OUT) for n in self.names], dtype=np.float32
        )
        self.latency = np.array([e.expected_latency_s for e in catalog.experts], dtype=np.float32)

    @staticmethod
    def _scaled(x: np.ndarray) -> np.ndarray:
        top = float(x.max())
        return x / top if top > 0 else np.zeros_like(x)

    @property
    def cost_norm(self) -> np.ndarray:
        """Per-call cost of each expert scaled to [0, 1]."""
        return self._scaled(self.cost)

    @property
    def carbon_norm(self) -> np.ndarray:
        """Per-call carbon of each expert scaled to [0, 1]."""
        return self._scaled(self.carbon)

    @property
    def latency_norm(self) -> np.ndarray:
        """Expected latency of each expert scaled to [0, 1]."""
        return self._scaled(self.latency)

    def utility(
        self,
        quality: np.ndarray,
        weights: ObjectiveWeights,
        cost_norm: np.ndarray | None = None,
        *,
        break_ties: bool = False,
    ) -> np.ndarray:
        """Weighted value of each expert given predicted quality (shape [..., n_experts]).

        `cost_norm` replaces the typical call's cost with a known one (e.g. a recorded call's), in the same scale.
        `break_ties` takes TIE_BREAK x cost off, so that among equal utilities the cheaper expert scores higher; it
        is computed in the precision of `quality` (float64 where a strategy needs it below float32's resolution).
        """
        cost = self.cost_norm if cost_norm is None else cost_norm
        value = (
            weights.quality * quality
            - weights.cost * cost
            - weights.carbon * self.carbon_norm
            - weights.latency * self.latency_norm
        )
        if break_ties:
            value = value - TIE_BREAK * np.asarray(cost, dtype=np.result_type(quality, cost))
        return value
