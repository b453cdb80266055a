"""What the two budget baselines share: kNN-predicted quality per expert and the pace of the carbon budget.

Both read a request's carbon_budget_left and window_left (fractions of the window's budget and of the window
itself still to come) and compare them: `pacing_gap = window_left - carbon_budget_left` is positive when the
window has spent a larger share of its budget than of its requests (ahead of its budget), negative when it has
budget to spare. Both predict each expert's quality with RouterBench's kNN router (KnnStrategy's index, fitted
with `fit` and checkpointed as its weights). The hard limit is not theirs to keep: the serving router and the
benchmark send every choice through router_deployments/budget_guard.py.
"""

from __future__ import annotations

import numpy as np

from router_deployments.strategies.base import RouteContext
from router_deployments.strategies.knn import KnnStrategy


def pacing_gap(contexts: list[RouteContext]) -> np.ndarray:
    """[batch] window_left - carbon_budget_left: > 0 when the budget drains faster than the window passes."""
    return np.array([c.window_left - c.carbon_budget_left for c in contexts], dtype=np.float64)


class BudgetPacedStrategy(KnnStrategy):
    """A kNN quality predictor whose choice also depends on how fast the window spends its carbon budget."""

    def predicted_utility(self, contexts: list[RouteContext]) -> np.ndarray:
        """[batch, n_experts] kNN-predicted quality under each request's objective weights (no tie-break)."""
        quality = self.predict_quality(np.stack([c.embedding for c in contexts])).astype(np.float64)
        return np.stack([self.profile.utility(q, c.weights) for q, c in zip(quality, contexts)])
