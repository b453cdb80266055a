"""The oracle: routes with the true recorded outcome of every expert on the prompt. Offline evaluation only.

It is the ceiling a router could reach on an outcome table: under the request's weights it maximises the utility
of the TRUE quality, and among equal utilities it takes the cheapest expert (so at quality-only weights it is
RouterBench's `oracle_model_to_route_to`: the cheapest model with the best score).
"""

from __future__ import annotations

import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig


class UnknownPromptError(LookupError):
    """The oracle was asked about a prompt whose outcomes it was not given."""


class OracleStrategy(RoutingStrategy):
    """Picks the expert with the best utility of its true score on this exact prompt text."""

    name = "oracle"

    def __init__(self, catalog: ExpertCatalog, config: StrategyConfig | None = None):
        super().__init__(catalog, config)
        self._rows: dict[str, int] = {}
        self._scores = np.zeros((0, len(catalog)), dtype=np.float32)
        self._cost_norm: np.ndarray | None = None

    def set_outcomes(self, texts: list[str], scores: np.ndarray, costs_usd: np.ndarray | None = None) -> OracleStrategy:
        """True scores [N, n_experts] per prompt text, and optionally the recorded cost of each call.

        With costs, the cost penalty uses the cost of this very call instead of the catalog's typical call, scaled
        by the same constant (the priciest expert's typical cost) so a cost weight means what it means elsewhere.
        """
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (len(texts), len(self.catalog)):
            raise ValueError(f"scores must be [{len(texts)}, {len(self.catalog)}], got {scores.shape}")
        self._rows = {t: i for i, t in enumerate(texts)}
        self._scores = scores
        self._cost_norm = None
        if costs_usd is not None:
            costs = np.asarray(costs_usd, dtype=np.float32)
            if costs.shape != scores.shape:
                raise ValueError(f"costs must have the scores' shape {scores.shape}, got {costs.shape}")
            scale = float(self.profile.cost.max())
            self._cost_norm = costs.astype(np.float64) / scale if scale > 0 else np.zeros(costs.shape)
        self.policy_version += 1
        return self

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Utility of each expert from the recorded true outcomes of the prompt."""
        out = np.empty((len(contexts), len(self.catalog)), dtype=np.float64)
        for i, ctx in enumerate(contexts):
            row = lookup_prompt(self._rows, ctx.text, "the oracle has no recorded outcomes", "set_outcomes()")
            # float64: the tie-break is below float32 resolution near 1.
            cost_norm = self.profile.cost_norm.astype(np.float64) if self._cost_norm is None else self._cost_norm[row]
            quality = self._scores[row].astype(np.float64)
            out[i] = self.profile.utility(quality, ctx.weights, cost_norm, break_ties=True)
        return out


def lookup_prompt(rows: dict, text: str, missing: str, given_to: str):
    """rows[text] for an offline reference that only knows the prompts it was given; a clear error otherwise."""
    try:
        return rows[text]
    except KeyError:
        raise UnknownPromptError(
            f"{missing} for prompt {text[:80]!r}... ({len(rows)} prompts known); it only routes prompts given to "
            f"{given_to}"
        ) from None
