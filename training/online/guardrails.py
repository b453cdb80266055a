"""The checks a candidate policy passes before the online learner publishes it.

1. No NaN or inf in its weights (`non_finite_weights`): a diverged candidate is never published.
2. Its off-policy value on the held-back slice of recent traffic is not below the live policy's by more than a
   margin (`snips_estimates`, `below_margin`). The value is the self-normalised IPS estimate (SNIPS) of the
   greedy policy:
       V(pi) = sum_i 1[pi(x_i) = a_i] r_i / p_i  /  sum_i 1[pi(x_i) = a_i] / p_i,
   with a_i the logged expert and p_i the probability the logging router gave it (from the outcome's `probs`,
   clipped at `min_propensity`; 1 when absent, which reduces it to the mean reward where the choices agree).
   With fewer than `min_matches` agreeing held-back experiences the check is skipped (`checked` is False).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from router_deployments.strategies import Experience, RouteContext, RoutingStrategy
from training.online.outcome_store import OutcomeRecord


def non_finite_weights(state: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]


def snips_estimates(
    candidate: RoutingStrategy,
    live: RoutingStrategy,
    holdback: Sequence[tuple[Experience, OutcomeRecord]],
    n_experts: int,
    min_propensity: float,
    min_matches: int,
) -> dict[str, Any]:
    """SNIPS estimates of the candidate's and the live policy's greedy rewards on the held-back experiences.

    Returns {"n", "candidate", "live" (None where no choice agrees), "candidate_matches", "live_matches",
    "checked"}; {"checked": False, "n": 0} without held-back experiences."""
    if not holdback:
        return {"checked": False, "n": 0}
    experiences, outcomes = zip(*holdback)
    contexts = [
        RouteContext(text="", embedding=o.embedding, weights=o.weights, carbon_budget_left=o.carbon_budget_left)
        for o in outcomes
    ]
    logged = np.array([e.expert for e in experiences])
    rewards = np.array([e.reward for e in experiences])
    propensity = np.array(
        [o.probs[e.expert] if o.probs and len(o.probs) == n_experts else 1.0 for e, o in zip(experiences, outcomes)]
    )
    inverse = 1.0 / np.clip(propensity, min_propensity, 1.0)
    out: dict[str, Any] = {"n": len(experiences)}
    for key, strategy in (("candidate", candidate), ("live", live)):
        match = np.asarray(strategy.score(contexts)).argmax(axis=1) == logged
        out[f"{key}_matches"] = int(match.sum())
        w = inverse * match
        out[key] = float((w * rewards).sum() / w.sum()) if match.any() else None
    out["checked"] = min(out["candidate_matches"], out["live_matches"]) >= min_matches
    return out


def below_margin(estimate: dict[str, Any], margin: float) -> bool:
    """Whether a checked estimate puts the candidate more than `margin` below the live policy."""
    return estimate["checked"] and estimate["candidate"] < estimate["live"] - margin
