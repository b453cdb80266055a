"""The typed record of one request inside the ingress: its routing decision and what the decision was made from,
then each expert's answer or failure. Dispatch builds these; responses, metrics and outcome records read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from experts.base import GenerationResult
from experts.catalog import ExpertCatalog
from experts.energy_model import JOULES_PER_KWH, GridIntensity
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RoutingDecision

if TYPE_CHECKING:
    from serve_app.budgets import BudgetView


@dataclass
class RoutedRequest:
    """One request once routed: the decision plus the context its outcome records need, and its clock."""

    request_id: str
    decision: RoutingDecision
    embedding: np.ndarray | None
    """What the strategy routed on; None for a direct request (nothing was embedded, nothing is learned)."""
    weights: ObjectiveWeights
    """The request's objective weights merged over the router's defaults."""
    carbon_budget_left: float
    started: float
    """time.perf_counter() when the request arrived (before its body was read)."""
    routed: float
    """time.perf_counter() when the decision was in."""
    handle_timings: dict[str, float] = field(default_factory=dict)
    """Seconds of the embedding and router calls; empty for a direct request."""
    record_s: float | None = None
    """Seconds spent recording the outcomes with the learner once answered (None: nothing recorded yet)."""
    budget: BudgetView | None = None
    """The budgets as routing saw them (serve_app.budgets); None where the ingress read none."""
    budget_status: str | None = None
    """What the ledger's reservation decided: 'reserved', 'downgraded' or 'over_budget' (None: nothing reserved)."""
    downgraded_from: list[str] | None = None
    """The decision's fan-out when the budget moved the request to another expert."""
    caller: str | None = None
    """Fingerprint of the API key that made the request (serve_app.auth; None in an open graph)."""

    @property
    def learnable(self) -> bool:
        """Whether its outcomes can train a strategy (a strategy decided, on an embedding)."""
        return self.embedding is not None

    def timings(self, done: float | None = None) -> dict[str, float]:
        """Seconds by step: the handle calls, the whole routing path and, once answered (`done`: when the expert
        answered), the expert, the outcome recording (a slow learner shows here) and the total."""
        seconds = {**self.handle_timings, "routing": self.routed - self.started}
        if done is not None:
            seconds["expert"] = done - self.routed
            if self.record_s is not None:
                seconds["record"] = self.record_s
            seconds["total"] = done - self.started + (self.record_s or 0.0)
        return seconds


@dataclass
class ExpertAnswer:
    """One expert's finished answer with the figures every report of it uses."""

    expert: str
    result: GenerationResult
    cost_usd: float
    carbon_g: float

    @classmethod
    def of(
        cls, expert: str, result: GenerationResult, catalog: ExpertCatalog, grid: GridIntensity | None = None
    ) -> ExpertAnswer:
        """Cost from the catalog's prices unless the backend knows the real one (a replayed answer does); carbon
        from the energy the replica reports for the call (its calibrated J/token) times the grid's intensity now,
        else from the catalog's figures."""
        tokens = (result.tokens_in, result.tokens_out)
        cost = result.extra.get("cost_usd", catalog.cost_usd(expert, *tokens))
        energy_j = result.extra.get("energy_j")
        if energy_j is None:
            carbon = catalog.carbon_g(expert, *tokens)
            if grid is not None:
                carbon *= grid.at(time.time()) / catalog.carbon_intensity_g_per_kwh
        else:
            intensity = grid.at(time.time()) if grid is not None else catalog.carbon_intensity_g_per_kwh
            carbon = float(energy_j) / JOULES_PER_KWH * intensity
        return cls(expert=expert, result=result, cost_usd=float(cost), carbon_g=carbon)


class ExpertFailure(BaseModel):
    """An expert call that failed; the response lists them under `routing.failover_from`."""

    model_config = ConfigDict(extra="forbid")

    expert: str
    error: str
