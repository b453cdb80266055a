"""The shared multi-objective reward and the online benchmark's bandit reward, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from router_deployments.objectives import ObjectiveWeights
from training.rewards import (
    RewardConfig,
    bandit_reward,
    carbon_budget_terms,
    normalised_costs,
    routing_reward,
    weighted_reward,
)


def test_weighted_objectives_on_a_hand_case():
    config = RewardConfig(w_accuracy=1.0, w_cost=0.5, w_carbon=0.2, w_latency=0.1)
    # 1 - 0.5 * 0.4 - 0.2 * 0.5 - 0.1 * 1.0 = 0.6
    assert routing_reward(1.0, 0.4, 0.5, 1.0, config=config) == pytest.approx(0.6)
    # A wrong answer keeps only the penalties.
    assert routing_reward(0.0, 0.4, 0.5, 1.0, config=config) == pytest.approx(-0.4)


def test_default_reward_is_the_quality():
    assert routing_reward(np.array([0.0, 0.5, 1.0]), 1.0, 1.0, 1.0).tolist() == [0.0, 0.5, 1.0]


def test_reward_broadcasts_a_table_against_per_expert_figures():
    quality = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    cost = np.array([1.0, 0.5, 0.1])
    reward = routing_reward(quality, cost, config=RewardConfig(w_cost=0.5))
    assert reward.shape == (2, 3)
    assert reward == pytest.approx(np.array([[0.5, -0.25, 0.95], [-0.5, 0.75, 0.95]]))


def test_carbon_budget_bonus_when_within_and_penalty_when_over():
    config = RewardConfig(budget_bonus=0.1, over_budget_penalty=0.5, call_budget_share=0.05)
    carbon = np.array([1.0, 0.2])  # the dirtiest expert spends 5% of the budget, the green one 1%
    # Plenty left: both keep the bonus.
    assert routing_reward(1.0, 0.0, carbon, 0.0, carbon_budget_left=0.5, config=config) == pytest.approx([1.1, 1.1])
    # 3% left: the dirty call overspends (0.03 - 0.05 < 0), the green one fits (0.03 - 0.01 >= 0).
    assert routing_reward(1.0, 0.0, carbon, 0.0, carbon_budget_left=0.03, config=config) == pytest.approx([0.5, 1.1])
    assert carbon_budget_terms(carbon, 0.0, config) == pytest.approx([-0.5, -0.5])
    # Off by default.
    assert carbon_budget_terms(carbon, 0.0, RewardConfig()) == pytest.approx([0.0, 0.0])


def test_from_weights_and_per_row_weights_agree_with_routing_reward():
    weights = ObjectiveWeights(quality=1.0, cost=0.3, carbon=0.2, latency=0.1)
    config = RewardConfig.from_weights(weights, over_budget_penalty=0.5)
    assert (config.w_accuracy, config.w_cost, config.w_carbon, config.w_latency) == (1.0, 0.3, 0.2, 0.1)
    quality = np.array([[1.0, 0.0], [0.0, 1.0]])
    cost, carbon, latency = np.array([[1.0, 0.2], [0.8, 0.1]]), np.array([1.0, 0.1]), np.array([0.5, 1.0])
    budget = np.array([1.0, 0.01])
    per_row = weighted_reward(quality, cost, carbon, latency, np.tile(weights.as_array(), (2, 1)), budget, config)
    for i in range(2):
        expected = routing_reward(quality[i], cost[i], carbon, latency, budget[i], config)
        assert per_row[i] == pytest.approx(expected)


def test_bandit_reward():
    assert bandit_reward(1.0, 0.002, lam=0.5, max_mean_cost=0.004) == pytest.approx(0.75)
    assert bandit_reward(np.array([1.0, 0.0]), np.array([0.0, 0.004]), 1.0, 0.004) == pytest.approx([1.0, -1.0])
    with pytest.raises(ValueError, match="max_mean_cost"):
        bandit_reward(1.0, 0.1, 1.0, 0.0)


def test_normalised_costs_use_the_priciest_mean():
    costs = np.array([[2.0, 1.0], [4.0, 1.0]])
    assert normalised_costs(costs) == pytest.approx(np.array([[2 / 3, 1 / 3], [4 / 3, 1 / 3]]))


def test_reward_config_is_strict():
    with pytest.raises(ValidationError):
        RewardConfig(w_costs=1.0)
    with pytest.raises(ValidationError):
        RewardConfig(w_cost=-1.0)


def test_rl_relabelled_rewards_match_the_shared_reward():
    from router_deployments.strategies.rl import normalised_weights, relabelled_rewards

    rng = np.random.default_rng(0)
    quality, cost, carbon, latency = (rng.random(6) for _ in range(4))
    weights = rng.random((6, 4)) * np.array([1, 10, 1, 1])
    expected = weighted_reward(
        quality[:, None], cost[:, None], carbon[:, None], latency[:, None], normalised_weights(weights)
    )[:, 0]
    assert relabelled_rewards(quality, cost, carbon, latency, weights) == pytest.approx(expected)
