"""The checks a candidate policy passes before the online learner publishes it.

1. No NaN or inf in its weights (`non_finite_weights`): a diverged candidate is never published.
2. It is not worse than the live policy on the held-back slice of recent traffic, on evidence
   (`snips_estimates`, `below_margin`). The value of each greedy policy is the self-normalised IPS estimate
   (SNIPS):
       V(pi) = sum_i 1[pi(x_i) = a_i] r_i / p_i  /  sum_i 1[pi(x_i) = a_i] / p_i,
   with a_i the logged expert and p_i the probability the logging router gave it (from the outcome's `probs`,
   clipped at `min_propensity`; 1 when absent, which reduces it to the mean reward where the choices agree).
   The advantage V(candidate) - V(live) is estimated as one paired IPS mean,
       D = 1/n sum_i (1[cand(x_i) = a_i] - 1[live(x_i) = a_i]) (r_i - mean r) / p_i,
   in which the prompts where both policies agree cancel exactly, and gets a bootstrap confidence interval (the
   held-back experiences resampled `n_boot` times): a candidate is refused only when the upper end of the
   two-sided `confidence` interval is below -margin. A point estimate on a small
   slice refuses many good candidates for noise (training/benchmarks/guardrail_rates.py measures both error
   rates). With fewer than `min_matches` agreeing held-back experiences the check is skipped (`checked` False).
3. The doubly-robust variant (`dr_compare`, used when the candidate has a Bayesian head and the learner's
   `publish_estimator` is "dr" or, the default, "switch-dr"): with q(x, a) a direct model of the reward (the
   candidate's head: its predicted utility under the request's weights), the advantage is
       D = 1/n sum_i [q(x_i, cand_i) - q(x_i, live_i)] + (1[cand_i = a_i] - 1[live_i = a_i]) (r_i - q(x_i, a_i)) / p_i,
   the direct difference corrected by the importance-weighted residual. Where the slice rarely holds the
   candidate's choice the direct term still carries evidence, so the bound is far tighter than the IPS one; it
   is unbiased when either q or the logged probabilities are right. Same bootstrap, same refusal rule. With 0/1
   scores the residual r - q stays about +-0.5 whatever q is, so on choices logged with probability p the residual
   term's variance is still ~0.25/p (as IPS's); `switch` drops it below a probability (SWITCH-DR).
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
    confidence: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
    estimator: str = "snips",
) -> dict[str, Any]:
    """SNIPS estimates of the candidate's and the live policy's greedy rewards on the held-back experiences, and
    the bootstrap bounds of their difference (see compare_policies); with estimator "dr" or "switch-dr" (switch at
    min_propensity) and a candidate with a Bayesian head, the doubly-robust ones (dr_compare, the head's utility
    under each request's weights as the direct model)."""
    if estimator not in ("snips", "dr", "switch-dr"):
        raise ValueError(f"estimator must be 'snips', 'dr' or 'switch-dr', got {estimator!r}")
    if not holdback:
        return {"checked": False, "n": 0}
    experiences, outcomes = zip(*holdback)
    contexts = [
        RouteContext(text="", embedding=o.embedding, weights=o.weights, carbon_budget_left=o.carbon_budget_left)
        for o in outcomes
    ]
    logged = np.array([e.expert for e in experiences])
    propensity = np.array(
        [o.probs[e.expert] if o.probs and len(o.probs) == n_experts else 1.0 for e, o in zip(experiences, outcomes)]
    )
    choices = [np.asarray(s.score(contexts)).argmax(axis=1) for s in (candidate, live)]
    head = getattr(candidate, "head", None)
    if estimator != "snips" and head is not None:
        embeddings = np.stack([o.embedding for o in outcomes])
        weights = np.stack([o.weights.as_array() for o in outcomes])
        direct = head.utility(head.predict(embeddings), weights)
        rewards = np.array([e.reward for e in experiences])
        return dr_compare(
            *choices,
            logged,
            rewards,
            propensity,
            direct,
            min_propensity=min_propensity,
            min_matches=min_matches,
            switch=min_propensity if estimator == "switch-dr" else 0.0,
            confidence=confidence,
            n_boot=n_boot,
            seed=seed,
        )
    return compare_policies(
        *choices,
        logged,
        np.array([e.reward for e in experiences]),
        propensity,
        min_propensity=min_propensity,
        min_matches=min_matches,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
    )


def compare_policies(
    candidate: np.ndarray,
    live: np.ndarray,
    logged: np.ndarray,
    rewards: np.ndarray,
    propensity: np.ndarray,
    *,
    min_propensity: float,
    min_matches: int,
    confidence: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """SNIPS values of two policies' choices on logged (expert, reward, propensity) triples and their difference.

    Returns {"n", "candidate", "live" (None where no choice agrees), "candidate_matches", "live_matches",
    "difference", "lower_bound", "upper_bound" (the two-sided `confidence` interval's ends, None when unchecked),
    "checked"}."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    inverse = 1.0 / np.clip(np.asarray(propensity, dtype=np.float64), min_propensity, 1.0)
    rewards = np.asarray(rewards, dtype=np.float64)
    out: dict[str, Any] = {"n": len(rewards)}
    weights = {}
    for key, choice in (("candidate", candidate), ("live", live)):
        w = weights[key] = inverse * (np.asarray(choice) == np.asarray(logged))
        out[f"{key}_matches"] = int((w > 0).sum())
        out[key] = float((w * rewards).sum() / w.sum()) if w.any() else None
    out["checked"] = min(out["candidate_matches"], out["live_matches"]) >= min_matches
    out.update(difference=None, lower_bound=None, upper_bound=None)
    if not out["checked"]:
        return out
    # The advantage as one paired IPS mean: where the two policies agree the terms cancel exactly, so only the
    # prompts where they differ add variance; the mean reward is subtracted as a control variate (the weights
    # 1[cand = a]/p - 1[live = a]/p have mean zero).
    terms = (weights["candidate"] - weights["live"]) * (rewards - rewards.mean())
    out["difference"] = float(terms.mean())
    counts = np.random.default_rng(seed).multinomial(len(rewards), np.full(len(rewards), 1 / len(rewards)), n_boot)
    diffs = counts @ terms / len(rewards)
    tail = (1.0 - confidence) / 2.0
    out["lower_bound"], out["upper_bound"] = (float(q) for q in np.quantile(diffs, [tail, 1.0 - tail]))
    return out


def dr_compare(
    candidate: np.ndarray,
    live: np.ndarray,
    logged: np.ndarray,
    rewards: np.ndarray,
    propensity: np.ndarray,
    direct: np.ndarray,
    *,
    min_propensity: float,
    min_matches: int = 1,
    switch: float = 0.0,
    confidence: float = 0.95,
    n_boot: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The doubly-robust advantage of the candidate's choices over the live policy's (see the module docstring),
    with `direct` [n, n_experts] the modelled reward of every expert on each logged prompt.

    Returns the keys of compare_policies ("candidate" and "live" are their DR values); checked when the slice holds
    at least `min_matches` experiences (the direct term needs no agreeing ones). `switch` > 0 is the SWITCH
    estimator: logged choices whose probability is below it get no residual correction (the direct model alone
    speaks there), trading the residual's variance 1/p for the model's bias."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rewards = np.asarray(rewards, dtype=np.float64)
    direct = np.asarray(direct, dtype=np.float64)
    n = len(rewards)
    if direct.shape[0] != n:
        raise ValueError(f"need one row of modelled rewards per logged experience, got {direct.shape} for {n}")
    rows = np.arange(n)
    inverse = 1.0 / np.clip(np.asarray(propensity, dtype=np.float64), min_propensity, 1.0)
    residual = (rewards - direct[rows, logged]) * inverse
    residual[np.asarray(propensity) < switch] = 0.0  # SWITCH-DR: the model alone where the weight would be huge
    values = {}
    for key, choice in (("candidate", candidate), ("live", live)):
        choice = np.asarray(choice)
        values[key] = direct[rows, choice] + (choice == logged) * residual
    terms = values["candidate"] - values["live"]
    out: dict[str, Any] = {"n": n, "checked": n >= max(min_matches, 1), "estimator": "dr"}
    out.update({k: float(v.mean()) if n else None for k, v in values.items()})
    for key, choice in (("candidate", candidate), ("live", live)):
        out[f"{key}_matches"] = int((np.asarray(choice) == logged).sum())
    out.update(difference=None, lower_bound=None, upper_bound=None)
    if not out["checked"]:
        return out
    out["difference"] = float(terms.mean())
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), n_boot)
    diffs = counts @ terms / n
    tail = (1.0 - confidence) / 2.0
    out["lower_bound"], out["upper_bound"] = (float(q) for q in np.quantile(diffs, [tail, 1.0 - tail]))
    return out


def below_margin(estimate: dict[str, Any], margin: float) -> bool:
    """Whether a checked estimate shows the candidate worse than the live policy by more than `margin`, on evidence:
    the upper confidence bound of its advantage is below -margin."""
    return bool(estimate["checked"]) and estimate["upper_bound"] < -margin
