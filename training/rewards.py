"""The multi-objective routing reward, shared by offline training, RLlib pretraining and the online learner.

    reward = w_accuracy * quality - w_cost * cost_norm - w_carbon * carbon_norm - w_latency * latency_norm
             + budget_bonus            if the call keeps the request inside its carbon budget
             - over_budget_penalty     if it does not

A call "spends" `call_budget_share * carbon_norm` of the carbon budget (the dirtiest expert spends
`call_budget_share`), so the budget terms only tell experts apart when the budget is nearly used up: with plenty
left every expert gets the bonus, and close to the end only the greener experts keep it.

Everything here is plain numpy and broadcasts, so one call scores a whole table ([prompts, experts]) at once.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from router_deployments.objectives import ObjectiveWeights


class RewardConfig(BaseModel):
    """Weights and carbon-budget terms of the routing reward (see the module docstring for the formula)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    w_accuracy: float = Field(1.0, ge=0, description="Gain per unit of answer quality (quality is in [0, 1]).")
    w_cost: float = Field(0.0, ge=0, description="Penalty per unit of normalised cost (1 = the priciest expert).")
    w_carbon: float = Field(0.0, ge=0, description="Penalty per unit of normalised carbon (1 = the dirtiest).")
    w_latency: float = Field(0.0, ge=0, description="Penalty per unit of normalised latency (1 = the slowest).")
    budget_bonus: float = Field(
        0.0, ge=0, description="Added when the call leaves the carbon budget unspent (0 switches it off)."
    )
    over_budget_penalty: float = Field(
        0.0, ge=0, description="Subtracted when the call overspends the carbon budget (0 switches it off)."
    )
    call_budget_share: float = Field(
        0.05, ge=0, le=1, description="Fraction of the whole carbon budget one call of the dirtiest expert spends."
    )

    @classmethod
    def from_weights(cls, weights: ObjectiveWeights, **budget_terms: float) -> RewardConfig:
        """The reward a router with these objective weights is trying to maximise."""
        return cls(
            w_accuracy=weights.quality,
            w_cost=weights.cost,
            w_carbon=weights.carbon,
            w_latency=weights.latency,
            **budget_terms,
        )


def routing_reward(
    quality,
    cost_norm=0.0,
    carbon_norm=0.0,
    latency_norm=0.0,
    carbon_budget_left=1.0,
    config: RewardConfig | None = None,
) -> np.ndarray:
    """Reward of each call; every argument broadcasts (e.g. quality [N, M] against cost_norm [M])."""
    c = config or RewardConfig()
    quality, cost_norm, carbon_norm, latency_norm, budget = (
        np.asarray(x, dtype=np.float64) for x in (quality, cost_norm, carbon_norm, latency_norm, carbon_budget_left)
    )
    reward = c.w_accuracy * quality - c.w_cost * cost_norm - c.w_carbon * carbon_norm - c.w_latency * latency_norm
    return reward + carbon_budget_terms(carbon_norm, budget, c)


def carbon_budget_terms(carbon_norm, carbon_budget_left, config: RewardConfig) -> np.ndarray:
    """+budget_bonus where the call fits in what is left of the carbon budget, -over_budget_penalty elsewhere."""
    carbon_norm = np.asarray(carbon_norm, dtype=np.float64)
    if not (config.budget_bonus or config.over_budget_penalty):
        return np.zeros_like(carbon_norm)
    within = np.asarray(carbon_budget_left, dtype=np.float64) - config.call_budget_share * carbon_norm >= 0.0
    return budget_terms(within, config)


def budget_terms(within, config: RewardConfig) -> np.ndarray:
    """+budget_bonus where a call keeps its budget (`within`, bool), -over_budget_penalty where it overruns.

    The budget windows of the rl trainer (training/trainers/routing_env.BudgetWindows) decide `within` with the
    serving guard's own rule (router_deployments/budget_guard.affordable: the call leaves enough for the rest of
    the window at the greenest expert); carbon_budget_terms decides it from call_budget_share."""
    within = np.asarray(within, dtype=bool)
    return np.where(within, config.budget_bonus, -config.over_budget_penalty).astype(np.float64)


def weighted_reward(
    quality,
    cost_norm,
    carbon_norm,
    latency_norm,
    weights: np.ndarray,
    carbon_budget_left=1.0,
    config: RewardConfig | None = None,
) -> np.ndarray:
    """Like routing_reward, with the four objective weights given per row as an array [..., 4]
    (quality, cost, carbon, latency) so that each prompt can carry its own trade-off; budget terms from config."""
    c = config or RewardConfig()
    w = np.asarray(weights, dtype=np.float64)
    w_q, w_c, w_e, w_l = (w[..., i : i + 1] for i in range(4))
    budget_terms = carbon_budget_terms(carbon_norm, np.asarray(carbon_budget_left)[..., None], c)
    return (
        w_q * np.asarray(quality, dtype=np.float64)
        - w_c * np.asarray(cost_norm, dtype=np.float64)
        - w_e * np.asarray(carbon_norm, dtype=np.float64)
        - w_l * np.asarray(latency_norm, dtype=np.float64)
        + budget_terms
    )


def bandit_reward(score, cost, lam: float, max_mean_cost: float) -> np.ndarray:
    """The online benchmark's reward: score minus lam times cost in units of the priciest expert's mean cost."""
    if max_mean_cost <= 0:
        raise ValueError(f"max_mean_cost must be positive, got {max_mean_cost}")
    return np.asarray(score, dtype=np.float64) - lam * np.asarray(cost, dtype=np.float64) / max_mean_cost


def normalised_costs(costs: np.ndarray) -> np.ndarray:
    """Per-call costs [N, M] in units of the priciest expert's mean cost (the scale bandit_reward uses)."""
    top = float(np.asarray(costs).mean(axis=0).max())
    return np.asarray(costs, dtype=np.float64) / top if top > 0 else np.zeros_like(costs, dtype=np.float64)
