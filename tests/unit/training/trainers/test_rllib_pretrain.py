"""The one-step routing environment, and RLlib DQN pretraining exported into the rl router's checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from router_deployments.strategies import RouteContext, build_strategy
from router_deployments.strategies.rl import RLStrategy, normalised_weights
from training.data.routerbench import OutcomeTable, catalog_from_table
from training.rewards import RewardConfig, normalised_costs, weighted_reward
from training.trainers.routing_env import Contexts, OutcomeRewards, RoutingEnv

DIM = 4
MODELS = ["org/big-70b", "org/small-7b"]


def table(n: int = 40) -> OutcomeTable:
    """The big expert answers the first half of the prompts, the small one the second half; big costs 10x."""
    half = n // 2
    scores = np.array([[1, 0]] * half + [[0, 1]] * (n - half), dtype=np.float32)
    costs = np.tile(np.array([[1e-3, 1e-4]], dtype=np.float32), (n, 1))
    return OutcomeTable(
        sample_ids=[str(i) for i in range(n)],
        prompts=[f"p{i}" for i in range(n)],
        tasks=["t"] * n,
        models=list(MODELS),
        scores=scores,
        costs=costs,
    )


def embeddings(n: int = 40) -> np.ndarray:
    x = np.random.default_rng(0).normal(scale=0.1, size=(n, DIM)).astype(np.float32)
    x[:, 0] = np.where(np.arange(n) < n // 2, -1.0, 1.0)
    return x


def outcomes(reward: RewardConfig | None = None) -> OutcomeRewards:
    t = table()
    return OutcomeRewards(embeddings(), t.scores, t.costs, catalog_from_table(t), reward)


def test_outcome_rewards_replay_the_table_under_each_requests_weights():
    o = outcomes()
    ctx = Contexts(
        rows=np.array([0, 39]), weights=np.array([[1, 0, 0, 0], [1, 1, 0, 0]], np.float32), budget_left=np.ones(2)
    )
    rewards = o.rewards(ctx)
    t = table()
    cost_norm = normalised_costs(t.costs)
    assert rewards.shape == (2, 2)
    assert rewards[0] == pytest.approx(t.scores[0])  # quality only
    # weights (1, 1) -> (0.5, 0.5): 0.5 * quality - 0.5 * cost_norm
    assert rewards[1] == pytest.approx(0.5 * t.scores[39] - 0.5 * cost_norm[39])
    expected = weighted_reward(
        t.scores[[0, 39]],
        cost_norm[[0, 39]],
        o.carbon_norm,
        o.latency_norm,
        normalised_weights(ctx.weights),
        ctx.budget_left,
    )
    assert rewards == pytest.approx(expected)
    obs = o.observations(ctx)
    assert obs.shape == (2, DIM + 6) and obs[1, -4:].tolist() == [0.5, 0.5, 0.0, 0.0]


def test_env_is_a_valid_one_step_gymnasium_env():
    from gymnasium.utils.env_checker import check_env

    env = RoutingEnv({"outcomes": outcomes(), "seed": 0})
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs) and env.action_space.n == 2
    _, reward, terminated, truncated, info = env.step(0)
    assert terminated and not truncated
    row = info["row"]
    assert info["quality"] == table().scores[row, 0]
    weights = obs[-4:]
    cost = normalised_costs(table().costs)[row, 0]
    assert reward == pytest.approx(
        weights[0] * table().scores[row, 0]
        - weights[1] * cost
        - weights[2] * 1.0
        - weights[3] * env.outcomes.latency_norm[0],
        abs=1e-5,
    )
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_export_maps_rllib_module_weights_onto_the_rl_strategy():
    from training.trainers.rllib_pretrain import export_weights

    catalog = catalog_from_table(table())
    router = build_strategy("rl", catalog, {"embedding_dim": DIM, "hidden": [8]})
    module_state = {f"q_net.{k}": v.numpy() + 1.0 for k, v in router.online.state_dict().items()}
    module_state.update({f"_target_q_net.{k}": v.numpy() - 1.0 for k, v in router.target.state_dict().items()})
    state = export_weights(module_state)
    router.load_state_dict(state)
    first = next(iter(router.online.state_dict()))
    assert torch.equal(router.online.state_dict()[first], torch.as_tensor(module_state[f"q_net.{first}"]))
    with pytest.raises(KeyError, match="target"):
        export_weights({"q_net.trunk.0.weight": np.zeros(1)})


def test_rllib_dqn_smoke_trains_exports_and_round_trips(tmp_path):
    """A few hundred env steps of RLlib's DQN (double Q, dueling, prioritised episode replay) on a tiny table."""
    from training.trainers.train_rl import fit_from_table

    t = table()
    catalog = catalog_from_table(t)
    router = fit_from_table(
        t,
        embeddings(),
        catalog,
        rllib=True,
        rllib_steps=300,
        learning_starts=64,
        batch_size=32,
        hidden="16",
        learning_rate=1e-2,
        progress=False,
    )
    assert isinstance(router, RLStrategy) and router.policy_version == 1
    untrained = build_strategy("rl", catalog, {"embedding_dim": DIM, "hidden": [16]})
    assert not torch.equal(router.online.advantage.weight, untrained.online.advantage.weight)
    contexts = [RouteContext(text=f"p{i}", embedding=e) for i, e in enumerate(embeddings())]
    decisions = router.route_batch(contexts)
    assert len(decisions) == 40 and all(d.expert in catalog.names for d in decisions)
    router.save(tmp_path / "rl")
    again = build_strategy("rl", catalog, {"embedding_dim": DIM, "hidden": [16], "checkpoint": str(tmp_path / "rl")})
    again.setup()
    assert np.array_equal(again.score(contexts), router.score(contexts))
