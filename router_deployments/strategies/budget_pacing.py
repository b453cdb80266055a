"""What the two budget baselines share: a per-expert quality predictor and the pace of the carbon budget.

Both read a request's carbon_budget_left and window_left (fractions of the window's budget and of the window
itself still to come) and compare them: `pacing_gap = window_left - carbon_budget_left` is positive when the
window has spent a larger share of its budget than of its requests (ahead of its budget), negative when it has
budget to spare. Both predict each expert's quality on the prompt with a trained strategy that does so (moe's gate
or the kNN index: `predict_quality`), loaded from `checkpoint` (that strategy's checkpoint, built with
`predictor_config`) or handed over with `use_predictor`. They are decision rules over that predictor, so they
learn nothing themselves. The hard limit is not theirs to keep: the benchmark sends every choice through
router_deployments/budget_guard.py, and on the server the budget ledger (serve_app/budget_ledger.py) applies the
same rule.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig

PREDICTORS = ("moe", "knn")


class BudgetPacedConfig(StrategyConfig):
    """Which trained strategy predicts quality: its name, and its checkpoint in `checkpoint`."""

    predictor: Literal["moe", "knn"] = Field("moe", description="Strategy whose predict_quality this one uses.")
    predictor_config: dict[str, Any] = Field(
        default_factory=dict, description="Config of the predictor (as under router.strategies), checkpoint aside."
    )


def pacing_gap(contexts: list[RouteContext]) -> np.ndarray:
    """[batch] window_left - carbon_budget_left: > 0 when the budget drains faster than the window passes."""
    return np.array([c.window_left - c.carbon_budget_left for c in contexts], dtype=np.float64)


class BudgetPacedStrategy(RoutingStrategy):
    """A quality predictor whose choice also depends on how fast the window spends its carbon budget."""

    Config = BudgetPacedConfig

    def __init__(self, catalog, config=None):
        super().__init__(catalog, config)
        self.predictor: RoutingStrategy | None = None

    def setup(self) -> None:
        """Load the predictor from `checkpoint` (a trained moe or knn checkpoint over the same experts)."""
        from router_deployments.strategies import build_strategy

        if self.config.checkpoint:
            config = {**self.config.predictor_config, "checkpoint": self.config.checkpoint}
            predictor = build_strategy(self.config.predictor, self.catalog, config)
            predictor.setup()
            self.use_predictor(predictor)

    def use_predictor(self, predictor: RoutingStrategy) -> BudgetPacedStrategy:
        """Predict quality with this trained strategy (it must have predict_quality and the same experts)."""
        if not hasattr(predictor, "predict_quality"):
            raise TypeError(f"strategy {predictor.name!r} predicts no per-expert quality; use one of {PREDICTORS}")
        if predictor.catalog.names != self.catalog.names:
            raise ValueError(f"the predictor routes over {predictor.catalog.names}, this router {self.catalog.names}")
        self.predictor = predictor
        self.policy_version = predictor.policy_version
        return self

    def predicted_utility(self, contexts: list[RouteContext]) -> np.ndarray:
        """[batch, n_experts] predicted quality under each request's objective weights (no tie-break)."""
        if self.predictor is None:
            raise RuntimeError(
                f"the {self.name} router has no quality predictor: set `checkpoint:` to a trained "
                f"{self.config.predictor} checkpoint (routerllm train {self.config.predictor})"
            )
        quality = self.predictor.predict_quality(np.stack([c.embedding for c in contexts])).astype(np.float64)
        return np.stack([self.profile.utility(q, c.weights) for q, c in zip(quality, contexts)])
