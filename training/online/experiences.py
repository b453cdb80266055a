"""What the learner makes of one logged outcome+feedback pair: its Experience, and the exploration it records.

`to_experience` is the one conversion: the reward is training/rewards.py's routing_reward under the request's own
weights, on the catalog's scale (ExpertProfile). `ExplorationTally` counts, per strategy, the logged answers whose
expert was not the most probable one under the logging router's own probabilities (the requests it explored on),
and the mean logged probability of the expert that answered: the figures /v1/learner/status shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router_deployments.objectives import ExpertProfile
from router_deployments.strategies import Experience
from training.online.outcome_store import LoggedExperience
from training.rewards import RewardConfig, routing_reward


def to_experience(item: LoggedExperience, expert: int, profile: ExpertProfile, reward: RewardConfig) -> Experience:
    """The Experience of one logged pair (`expert`: its catalog index); `reward` gives the carbon-budget terms."""
    o, p = item.outcome, profile
    cost_norm = o.cost_usd / max(float(p.cost.max()), 1e-12)
    carbon_norm = o.carbon_g / max(float(p.carbon.max()), 1e-12)
    latency_norm = o.latency_s / max(float(p.latency.max()), 1e-12)
    budget_terms = reward.model_dump(include={"budget_bonus", "over_budget_penalty", "call_budget_share"})
    config = RewardConfig.from_weights(o.weights, **budget_terms)
    value = routing_reward(item.score, cost_norm, carbon_norm, latency_norm, o.carbon_budget_left, config)
    return Experience(
        embedding=o.embedding,
        expert=expert,
        reward=float(value),
        quality=float(item.score),
        cost_usd=o.cost_usd,
        carbon_g=o.carbon_g,
        latency_s=o.latency_s,
        carbon_budget_left=o.carbon_budget_left,
    )


@dataclass
class ExplorationTally:
    """Per logging strategy: answers logged with probabilities, how many explored, and their summed propensity."""

    counts: dict[str, list[float]] = field(default_factory=dict)

    def add(self, item: LoggedExperience, expert: int) -> None:
        """Count one logged answer (fan-out rank 0, with probabilities); anything else is not a routing choice."""
        o = item.outcome
        if o.fanout_rank != 0 or not o.probs or not 0 <= expert < len(o.probs):
            return
        row = self.counts.setdefault(o.strategy, [0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += float(expert != int(np.argmax(o.probs)))
        row[2] += float(o.probs[expert])

    def figures(self, strategy: str) -> dict[str, Any]:
        """{"logged_answers", "explored_share", "mean_logged_propensity"} of one strategy (None before any)."""
        n, explored, propensity = self.counts.get(strategy, [0.0, 0.0, 0.0])
        return {
            "logged_answers": int(n),
            "explored_share": explored / n if n else None,
            "mean_logged_propensity": propensity / n if n else None,
        }
