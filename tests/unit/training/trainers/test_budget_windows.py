"""Budget windows as episodes: the env's transitions, the replay of next states, and the windowed DQN trainer."""

from __future__ import annotations

import numpy as np
import pytest

from router_deployments.strategies.rl import state_features
from training.data.routerbench import OutcomeTable, catalog_from_table
from training.rewards import RewardConfig
from training.trainers.replay_buffer import CarbonAwareReplayBuffer
from training.trainers.routing_env import BudgetWindows, OutcomeRewards
from training.trainers.train_rl import fit_from_table, window_quality

DIM = 4
MODELS = ["org/big-70b", "org/small-7b"]  # carbon_norm 1 and 0.1


def table(n: int = 40) -> OutcomeTable:
    """Half the prompts need the big expert (small scores 0); on the other half small scores 0.8, big 1."""
    half = n // 2
    scores = np.array([[1.0, 0.0]] * half + [[1.0, 0.8]] * (n - half), dtype=np.float32)
    return OutcomeTable(
        sample_ids=[str(i) for i in range(n)],
        prompts=[f"p{i}" for i in range(n)],
        tasks=["t"] * n,
        models=list(MODELS),
        scores=scores,
        costs=np.tile(np.array([[1e-3, 1e-4]], dtype=np.float32), (n, 1)),
    )


def embeddings(n: int = 40) -> np.ndarray:
    x = np.random.default_rng(0).normal(scale=0.1, size=(n, DIM)).astype(np.float32)
    x[:, 0] = np.where(np.arange(n) < n // 2, -1.0, 1.0)
    return x


def windows(budget_frac=0.55, window=4, reward=None) -> BudgetWindows:
    t = table()
    outcomes = OutcomeRewards(embeddings(), t.scores, t.costs, catalog_from_table(t))
    return BudgetWindows(outcomes, window, budget_frac, reward, baseline=0.5)


def test_a_window_step_gives_every_experts_transition():
    w = windows(reward=RewardConfig(budget_bonus=0.1, over_budget_penalty=2.0))
    assert w.budget == pytest.approx(0.55 * 4)  # in units of the dirtiest expert's call
    rows = np.array([[0, 25, 1, 26], [0, 25, 1, 26]])
    left = np.array([2.2, 1.25])  # the second window: 1.25 left, 3 requests to reserve 0.1 each after this one
    step = w.step(rows, 0, left)
    assert step.obs.shape == (2, DIM + 6) and step.obs[:, DIM].tolist() == pytest.approx([1.0, 1.25 / 2.2])
    assert step.obs[:, DIM + 1].tolist() == [1.0, 1.0]  # the window has just begun
    assert step.allowed.tolist() == [[True, True], [False, True]]  # 1.25 - 1.0 < 0.3 reserved
    # quality - baseline + bonus where the call fits, - penalty (and the end) where it overruns.
    assert step.rewards == pytest.approx(np.array([[0.6, -0.4], [-1.5, -0.4]]))
    assert step.dones.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    expected = state_features(embeddings()[[25]], (2.2 - 1.0) / 2.2, w.weights, 0.75)
    assert step.next_obs[0, 0] == pytest.approx(expected[0])
    assert step.next_obs.shape == (2, 2, DIM + 6) and step.next_allowed.shape == (2, 2, 2)
    last = w.step(rows, 3, left)
    assert last.dones.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_replay_keeps_next_states_for_window_transitions():
    buffer = CarbonAwareReplayBuffer(capacity=4, obs_dim=2, n_actions=3)
    allowed = np.array([[True, False, True], [True, True, True]])
    buffer.add(np.zeros((2, 2)), [0, 1], [1.0, 0.5], [1.0, 0.0], [1.0, 0.1], np.ones((2, 2)), [0.0, 1.0], allowed)
    batch = buffer.sample(50)
    assert batch.next_obs.shape == (50, 2) and set(batch.dones.tolist()) <= {0.0, 1.0}
    assert (batch.next_allowed == allowed[batch.index]).all()
    with pytest.raises(ValueError, match="next states"):
        buffer.add(np.zeros((1, 2)), 0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="next states"):
        CarbonAwareReplayBuffer(capacity=2, obs_dim=2).add(np.zeros((1, 2)), 0, 1.0, 1.0, 0.0, next_obs=np.ones(2))


def test_the_windowed_dqn_learns_to_keep_the_budget_for_the_prompts_that_need_it():
    """Budget for the big expert on about half the requests: a myopic policy spends it on whichever prompt comes
    first (big is always best), the windowed DQN should keep it for the prompts where small scores 0."""
    t = table()
    catalog = catalog_from_table(t)
    options = dict(window=8, budget_frac=0.55, total_steps=12000, hidden="32,32", learning_rate=2e-3)
    options.update(val_fraction=0.0, progress=False, over_budget_penalty=1.0, gamma=1.0, learning_starts=256)
    router = fit_from_table(t, embeddings(), catalog, **options)
    w = BudgetWindows(OutcomeRewards(embeddings(), t.scores, t.costs, catalog), 8, 0.55)
    test_windows = w.new_windows(np.random.default_rng(5), 200, np.arange(len(t)))

    class Myopic:
        def q_values(self, obs):
            return np.tile([1.0, 0.4], (len(obs), 1))

    assert window_quality(router, w, test_windows) > window_quality(Myopic(), w, test_windows) + 0.05
    assert router.config.carbon_penalty == 0.0 and router.architecture()["state"][1:3] == [
        "carbon_budget_left",
        "window_left",
    ]


def test_potential_based_shaping_prices_each_call_and_the_budget_left_at_the_end():
    plain, shaped = windows(), windows()
    shaped.shaping_price, shaped.gamma = 0.5, 0.9
    rows, left = np.array([[0, 25, 1, 26]]), np.array([2.0])
    gap = shaped.step(rows, 0, left).rewards - plain.step(rows, 0, left).rewards
    # r + gamma * Phi(s') - Phi(s), Phi = 0.5 x carbon left: each call pays gamma * 0.5 per unit of its carbon.
    assert gap[0] == pytest.approx(0.5 * (0.9 * (2.0 - np.array([1.0, 0.1])) - 2.0))
    last = shaped.step(rows, 3, left).rewards - plain.step(rows, 3, left).rewards
    assert last[0] == pytest.approx([-1.0, -1.0])  # the window ends: what is left is worth nothing
    with pytest.raises(ValueError, match="shaping price"):
        BudgetWindows(plain.outcomes, 4, 0.5, shaping_price=-1.0)
