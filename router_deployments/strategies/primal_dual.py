"""Online primal-dual carbon-budget baseline: a dual price on carbon, updated from spend against budget.

The budget constraint of a window (carbon spent <= budget) gets a Lagrange multiplier, the price lambda of one unit
of carbon (carbon_norm: the dirtiest expert's call is 1) in units of predicted utility. Each request takes the
expert with the best predicted utility net of its carbon at that price (the primal step):

    choice = argmax_j  u_j - lambda * carbon_norm_j,     lambda = max(0, price + step * gap)

where gap = window_left - carbon_budget_left (budget_pacing.pacing_gap) is the window's overspend so far, in
shares of its budget. Summing the dual subgradient (spend of each call minus the budget per call) over the
requests seen gives exactly that overspend, so `step * gap` is the dual gradient step within a window; `price`,
the price a window starts from, is learned across windows (the dual step carried over): after every request
price <- max(0, price + price_rate * gap). With no budget (both fractions 1) the gap is 0 and only `price` counts.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from router_deployments.strategies.base import RouteContext
from router_deployments.strategies.budget_pacing import BudgetPacedConfig, BudgetPacedStrategy, pacing_gap


class PrimalDualConfig(BudgetPacedConfig):
    """The starting dual price of carbon and its two step sizes."""

    price: float = Field(0.1, ge=0, description="Dual price of carbon a window starts from (utility per carbon_norm).")
    step: float = Field(0.5, ge=0, description="Price added per unit of overspend within the window (pacing gap).")
    price_rate: float = Field(
        0.0, ge=0, description="How fast the starting price follows the overspend, per request (0: fixed)."
    )


class PrimalDualStrategy(BudgetPacedStrategy):
    """Predicted utility net of carbon at a dual price that rises when the window overspends its budget."""

    name = "primal_dual"
    Config = PrimalDualConfig

    def __init__(self, catalog, config=None):
        super().__init__(catalog, config)
        self.price = float(self.config.price)

    def prices(self, contexts: list[RouteContext]) -> np.ndarray:
        """[batch] the dual price of carbon for each request (the module docstring), before the update."""
        return np.maximum(0.0, self.price + self.config.step * pacing_gap(contexts))

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Predicted utility minus the dual price times each expert's carbon; then the price update."""
        utility = self.predicted_utility(contexts)
        prices = self.prices(contexts)
        if self.config.price_rate > 0:
            self.price = max(0.0, self.price + self.config.price_rate * float(pacing_gap(contexts).sum()))
        return utility - prices[:, None] * self.profile.carbon_norm.astype(np.float64)[None, :]
