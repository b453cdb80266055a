"""Replaying a stream of prompts, cut into budget windows, through one strategy and the serving budget guard.

A window of n requests has a carbon budget of `budget_frac` x what always routing to the largest expert would
spend on it. Request t (0-based) is routed with RouteContext(carbon_budget_left = carbon left / budget,
window_left = (n - t) / n): 1 and 1 at the start of a window, the request itself counted as still to come. The
strategy scores the experts; with the guard on, router_deployments/budget_guard.guard_choice picks the best one
that leaves the rest of the window the greenest expert's carbon for each request still to come (the code the server
runs); with it off, the strategy's top score goes through, so the strategy's own budget awareness shows.

Windows are independent, so request t of every window is scored in one batch: the same choices as a request at a
time for a strategy that keeps no state across requests (all of this benchmark's, with primal_dual's price_rate 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router_deployments import budget_guard
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext, RoutingStrategy


def cut_windows(order: np.ndarray, window: int) -> list[np.ndarray]:
    """The stream `order` (row indices) in consecutive windows of `window` requests; the last may be shorter."""
    if window < 1:
        raise ValueError(f"a budget window needs at least one request, got {window}")
    order = np.asarray(order)
    return [order[i : i + window] for i in range(0, len(order), window)]


@dataclass
class Replay:
    """What one strategy did on a stream of windows."""

    choices: np.ndarray
    """[len(stream)] expert chosen for each request, in stream order (the windows concatenated)."""
    window_carbon: np.ndarray
    """[n_windows] carbon spent in each window."""
    window_budget: np.ndarray
    """[n_windows] each window's carbon budget."""
    overridden: int
    """Requests the guard sent elsewhere than the strategy's top score."""


def replay_windows(
    strategy: RoutingStrategy,
    windows: list[np.ndarray],
    texts: list[str],
    embeddings: np.ndarray,
    call_carbon: np.ndarray,
    budget_frac: float,
    *,
    weights: ObjectiveWeights | None = None,
    guard: bool = True,
) -> Replay:
    """Route every request of every window (rows index `texts` and `embeddings`); see the module docstring."""
    weights = weights or ObjectiveWeights()
    call_carbon = np.asarray(call_carbon, dtype=np.float64)
    lengths = np.array([len(w) for w in windows])
    budgets = budget_frac * lengths * float(call_carbon.max())
    left = budgets.copy()
    chosen = [np.empty(n, dtype=int) for n in lengths]
    overridden = 0
    for t in range(int(lengths.max(initial=0))):
        active = np.flatnonzero(lengths > t)
        contexts = [
            RouteContext(
                text=texts[windows[w][t]],
                embedding=embeddings[windows[w][t]],
                weights=weights,
                carbon_budget_left=float(max(left[w], 0.0) / budgets[w]),
                window_left=float((lengths[w] - t) / lengths[w]),
            )
            for w in active
        ]
        scores = np.asarray(strategy.score(contexts), dtype=np.float64)
        for w, s in zip(active, scores):
            if guard:
                reserve = budget_guard.reserve_for(call_carbon, lengths[w] - t - 1)
                decision = budget_guard.guard_choice(s, call_carbon, left[w], reserve)
                expert, overridden = decision.index, overridden + decision.overridden
            else:
                expert = int(np.argmax(s))
            chosen[w][t] = expert
            left[w] -= call_carbon[expert]
    return Replay(
        choices=np.concatenate(chosen) if chosen else np.empty(0, dtype=int),
        window_carbon=budgets - left,
        window_budget=budgets,
        overridden=overridden,
    )


def run_metrics(
    replay: Replay, stream: np.ndarray, scores: np.ndarray, costs: np.ndarray, call_carbon: np.ndarray, largest: int
) -> dict[str, float]:
    """The results.json figures of one run: quality, carbon and cost of the choices, and how the windows kept
    their budgets (carbon as a share of always-largest's on the same stream, overrun as a share of the window's
    budget)."""
    rows = np.asarray(stream)
    quality = float(scores[rows, replay.choices].mean())
    carbon = float(np.asarray(call_carbon)[replay.choices].sum())
    largest_carbon = float(call_carbon[largest]) * len(rows)
    overrun = np.maximum(replay.window_carbon - replay.window_budget, 0.0) / replay.window_budget
    over = overrun > budget_guard.RELATIVE_SLACK
    return {
        "quality": quality,
        "carbon_g": carbon,
        "carbon_frac": carbon / largest_carbon,
        "windows_over_budget_frac": float(over.mean()),
        "max_overrun_frac": float(np.where(over, overrun, 0.0).max(initial=0.0)),
        "cost_usd": float(costs[rows, replay.choices].sum()),
        "n_windows": len(replay.window_budget),
        "guard_overrides_frac": replay.overridden / max(len(rows), 1),
    }
