"""Greedy-threshold carbon-budget baseline: the greenest expert whose predicted quality is within a margin of the
best, the margin widening as the budget drains.

For each request, with predicted utilities u_j (quality under the request's weights) and the budget's pace
(budget_pacing.pacing_gap: window_left - carbon_budget_left),

    margin   = max(0, margin + widen * gap)
    eligible = {j : u_j >= max_k u_k - margin}
    choice   = the eligible expert with the lowest carbon per call

so at an even pace it gives up at most `margin` of predicted quality to save carbon, more as the window spends
ahead of its budget, less (down to always the best) with budget to spare. Scores rank the eligible experts by
carbon, greenest first, above every other expert ranked by predicted utility, so that the budget guard, if it
must refuse the choice, takes the next greenest eligible expert, or else the best predicted one it can afford.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from router_deployments.strategies.base import RouteContext
from router_deployments.strategies.budget_pacing import BudgetPacedConfig, BudgetPacedStrategy, pacing_gap


class GreedyThresholdConfig(BudgetPacedConfig):
    """The margin of predicted quality given up for carbon, and how fast it widens with the budget's pace."""

    margin: float = Field(0.05, ge=0, description="Predicted quality given up at an even pace of the budget.")
    widen: float = Field(
        1.0, ge=0, description="Margin added per unit of pacing gap (budget share spent minus window share passed)."
    )


class GreedyThresholdStrategy(BudgetPacedStrategy):
    """The greenest expert within a budget-dependent margin of the best predicted quality."""

    name = "greedy_threshold"
    Config = GreedyThresholdConfig

    def margins(self, contexts: list[RouteContext]) -> np.ndarray:
        """[batch] the quality margin of each request at its budget's pace."""
        return np.maximum(0.0, self.config.margin + self.config.widen * pacing_gap(contexts))

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Eligible experts score 1 + (1 - carbon_norm) in [1, 2], the others their utility below the best, < 0."""
        utility = self.predicted_utility(contexts)
        below_best = utility - utility.max(axis=1, keepdims=True)
        eligible = below_best >= -self.margins(contexts)[:, None] - 1e-12
        greenness = 2.0 - self.profile.carbon_norm.astype(np.float64)[None, :]
        return np.where(eligible, greenness, below_best - 1.0)
