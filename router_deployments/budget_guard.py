"""The hard carbon-budget guard: one pure rule, the same offline (routerllm bench-budget) and in serving.

A budget window (a number of requests, or a stretch of time) has a carbon budget. Whatever a strategy prefers, a
call may only go to an expert whose carbon fits in what is left of the window's budget after keeping a reserve for
the requests still to come, normally the greenest expert's call for each of them (`reserve_for`). Among the experts
that fit, the guard takes the strategy's best-scoring one. Because the reserve always covers the rest of the window
at the greenest expert, a window whose budget covers its requests at the greenest expert never ends over budget.
When not even the greenest expert fits (the budget was already short, e.g. smaller than the window at the greenest
expert), the guard sends the call to the greenest expert: it cannot refuse a request, only spend as little as
possible on it.

Plain numpy, no state: the caller keeps the window's accounts (carbon left, requests to come) and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Carbon amounts are sums of floats: a call that fits to within this relative slack fits.
RELATIVE_SLACK = 1e-9


@dataclass(frozen=True)
class GuardDecision:
    """The expert the guard lets this call go to, and why."""

    index: int
    """Expert to call (catalog order)."""
    preferred: int
    """The strategy's own best-scoring expert."""
    affordable: np.ndarray
    """[n_experts] bool: which experts this call could afford."""

    @property
    def overridden(self) -> bool:
        """True when the guard sent the call elsewhere than the strategy preferred."""
        return self.index != self.preferred


def reserve_for(call_carbon: np.ndarray, requests_after: float) -> float:
    """Carbon to keep for the requests that follow this one in the window: the greenest expert's call for each."""
    return float(np.min(np.asarray(call_carbon, dtype=np.float64))) * max(float(requests_after), 0.0)


def affordable(call_carbon: np.ndarray, carbon_left: float, reserve: float = 0.0) -> np.ndarray:
    """[n_experts] bool: the experts whose call leaves at least `reserve` of the `carbon_left` in the window."""
    carbon = np.asarray(carbon_left, dtype=np.float64) - np.asarray(reserve, dtype=np.float64)
    slack = RELATIVE_SLACK * max(abs(float(carbon_left)), 1e-12)
    return np.asarray(call_carbon, dtype=np.float64) <= carbon + slack


def guard_choice(
    scores: np.ndarray, call_carbon: np.ndarray, carbon_left: float, reserve: float = 0.0
) -> GuardDecision:
    """The best-scoring expert this call can afford (see the module docstring).

    `scores` [n_experts]: the strategy's scores, higher is better; `call_carbon` [n_experts]: each expert's
    predicted carbon for this call (gCO2eq, or any unit shared with the next two); `carbon_left`: the window's
    budget not yet spent; `reserve`: what must stay for the rest of the window (reserve_for). Ties go to the greener
    expert. When no expert fits, the greenest (the best-scoring among equally green ones)."""
    scores = np.asarray(scores, dtype=np.float64)
    carbon = np.asarray(call_carbon, dtype=np.float64)
    if scores.shape != carbon.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"need one score and one carbon figure per expert, got {scores.shape} and {carbon.shape}")
    if not (np.isfinite(carbon).all() and (carbon >= 0).all()):
        raise ValueError(f"call carbon must be finite and non-negative, got {carbon.tolist()}")
    preferred = _best(scores, carbon, np.ones(len(scores), dtype=bool))
    fits = affordable(carbon, carbon_left, reserve)
    if not fits.any():
        fits = carbon <= carbon.min()
    return GuardDecision(index=_best(scores, carbon, fits), preferred=preferred, affordable=fits)


def _best(scores: np.ndarray, carbon: np.ndarray, allowed: np.ndarray) -> int:
    """Highest score among `allowed`, the lowest carbon among equal scores (NaN scores rank last)."""
    ranked = np.where(allowed & ~np.isnan(scores), scores, -np.inf)
    top = ranked.max()
    candidates = np.flatnonzero(allowed & (ranked == top)) if np.isfinite(top) else np.flatnonzero(allowed)
    return int(candidates[np.argmin(carbon[candidates])])
