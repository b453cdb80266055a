"""The DQN router: dueling network, soft updates, carbon-aware replay, carbon-aware routing, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from router_deployments.checkpoints import CheckpointError
from router_deployments.networks import DuelingQNetwork, dueling_q, soft_update
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import Experience, RouteContext, build_strategy
from router_deployments.strategies.rl import RLConfig, RLStrategy, normalised_weights, state_features
from training.data.routerbench import OutcomeTable, catalog_from_table, load_routerbench
from training.trainers.replay_buffer import CarbonAwareReplayBuffer

DIM = 8
MODELS = ["org/big-70b", "org/mid-13b", "org/small-7b"]  # priciest and dirtiest first


def table() -> OutcomeTable:
    scores = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=np.float32)
    costs = np.tile(np.array([[1e-3, 3e-4, 1e-4]], dtype=np.float32), (3, 1))
    return OutcomeTable(
        sample_ids=["a", "b", "c"],
        prompts=["a", "b", "c"],
        tasks=["t"] * 3,
        models=list(MODELS),
        scores=scores,
        costs=costs,
    )


@pytest.fixture
def catalog():
    return catalog_from_table(table())


def rl(catalog, **overrides) -> RLStrategy:
    return RLStrategy(catalog, RLConfig(**{"embedding_dim": DIM, "hidden": [16, 16], **overrides}))


def contexts(embeddings, weights=None, budget=1.0):
    weights = weights or ObjectiveWeights()
    return [
        RouteContext(text=f"p{i}", embedding=e, weights=weights, carbon_budget_left=budget)
        for i, e in enumerate(embeddings)
    ]


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


# --- network --------------------------------------------------------------------------------------------
def test_dueling_aggregation():
    q = dueling_q(torch.tensor([[1.0]]), torch.tensor([[1.0, 2.0, 3.0]]))
    assert q.tolist() == [[0.0, 1.0, 2.0]]  # V + A - mean(A)
    net = DuelingQNetwork(6, 4, [8])
    x = torch.randn(5, 6)
    h = net.trunk(x)
    assert torch.allclose(net(x).mean(1, keepdim=True), net.value(h), atol=1e-6)  # mean_a Q = V


def test_weight_linear_heads_make_q_linear_in_the_objective_weights():
    torch.manual_seed(0)
    net = DuelingQNetwork(DIM + 4, 3, [16], n_weights=4)
    s = torch.randn(2, DIM)
    w1, w2 = torch.rand(2, 4), torch.rand(2, 4)

    def q(w):
        return net(torch.cat([s, w], dim=1))

    assert torch.allclose(q(w1) + q(w2) - q(torch.zeros(2, 4)), q(w1 + w2), atol=1e-5)


def test_soft_update():
    online, target = DuelingQNetwork(4, 2, [3]), DuelingQNetwork(4, 2, [3])
    before = [p.clone() for p in target.parameters()]
    soft_update(target, online, tau=0.25)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t, 0.75 * b + 0.25 * o)
    soft_update(target, online, tau=1.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


# --- replay ---------------------------------------------------------------------------------------------
def test_replay_priorities_favour_surprise_then_green_accuracy():
    buffer = CarbonAwareReplayBuffer(capacity=4, obs_dim=2, alpha=1.0, green_weight=1.0, carbon_floor=0.1, eps=0.0)
    # Right answers from a green (0.0) and the dirtiest (1.0) expert, a wrong green one.
    buffer.add(np.zeros((3, 2)), [0, 1, 2], [1.0, 1.0, 0.0], quality=[1.0, 1.0, 0.0], carbon_norm=[0.0, 1.0, 0.0])
    assert buffer.green_efficiency(1.0, 0.0) == pytest.approx(1.0)
    assert buffer.green_efficiency(1.0, 1.0) == pytest.approx(0.1 / 1.1)
    # New transitions start at the largest TD error seen (1.0) plus their green efficiency.
    assert buffer.priorities() == pytest.approx([2.0, 1.0 + 0.1 / 1.1, 1.0])
    buffer.update_priorities(np.array([0, 1, 2]), np.array([0.0, 0.0, -3.0]))
    assert buffer.priorities() == pytest.approx([1.0, 0.1 / 1.1, 3.0])
    batch = buffer.sample(4000, beta=1.0)
    freq = np.bincount(batch.index, minlength=3) / 4000
    assert freq == pytest.approx(buffer.priorities() / buffer.priorities().sum(), abs=0.03)
    # Importance weights undo the sampling bias: the rarest transition weighs 1, the others less.
    assert batch.weights.max() == pytest.approx(1.0)
    assert batch.weights[batch.index == 2].max() == pytest.approx((0.1 / 1.1) / 3.0, rel=1e-4)


def test_replay_ring_overwrites_the_oldest():
    buffer = CarbonAwareReplayBuffer(capacity=3, obs_dim=1)
    for i in range(5):
        buffer.add([[float(i)]], i, float(i), 1.0, 0.0)
    assert len(buffer) == 3
    assert sorted(buffer.obs[:, 0].tolist()) == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="empty"):
        CarbonAwareReplayBuffer(capacity=2, obs_dim=1).sample(1)


# --- routing --------------------------------------------------------------------------------------------
def test_state_features():
    weights = np.array([[1.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    obs = state_features(np.ones((2, 3)), [0.5, 2.0], weights, window_left=[0.25, -1.0])
    assert obs.shape == (2, 3 + 2 + 4)
    assert obs[:, 3].tolist() == [0.5, 1.0]  # budget clipped to [0, 1]
    assert obs[:, 4].tolist() == [0.25, 0.0]  # window left, clipped too
    assert obs[0, 5:].tolist() == [0.25, 0.75, 0.0, 0.0]  # weights scaled to sum to one, last
    assert obs[1, 5:].tolist() == [1.0, 0.0, 0.0, 0.0]  # all-zero weights mean quality only
    assert state_features(np.ones((1, 3)), 1.0, weights[:1])[0, 4] == 1.0  # no window: a window just begun
    assert normalised_weights(np.array([2.0, 2.0, 0.0, 0.0])).tolist() == [0.5, 0.5, 0.0, 0.0]


def test_scores_and_decisions(catalog):
    router = rl(catalog)
    scores = router.score(contexts(embeddings(5)))
    assert scores.shape == (5, 3)
    for d, s in zip(router.route_batch(contexts(embeddings(5))), scores):
        assert d.expert == catalog.names[int(np.argmax(s))] and d.fanout == [d.expert]
        assert sum(d.probs) == pytest.approx(1.0) and max(d.probs) == pytest.approx(1.0)
    x = contexts(embeddings(4))
    assert np.array_equal(rl(catalog, seed=2).score(x), rl(catalog, seed=2).score(x))
    assert not np.allclose(rl(catalog, seed=2).score(x), rl(catalog, seed=3).score(x))


def test_carbon_penalty_and_green_exploration_grow_as_the_budget_runs_out(catalog):
    router = rl(catalog, carbon_penalty=100.0)
    x = embeddings(10)
    full = router.score(contexts(x, budget=1.0))
    empty = router.score(contexts(x, budget=0.0))
    # With budget to spare, only Q counts; with none left the greenest expert wins everywhere.
    assert np.allclose(full, router.q_values(router.observations(contexts(x))))
    assert (empty.argmax(1) == 2).all()
    assert router.exploration_probs(np.array([1.0]))[0] == pytest.approx([1 / 3] * 3)
    tight = router.exploration_probs(np.array([0.0]))[0]
    assert tight[2] > tight[1] > tight[0]


def test_epsilon_greedy_explores_and_reports_behaviour_probabilities(catalog):
    router = rl(catalog, epsilon=1.0, seed=0)
    decisions = router.route_batch(contexts(embeddings(300), budget=1.0))
    counts = np.bincount([catalog.index(d.expert) for d in decisions], minlength=3)
    assert counts.min() > 60  # uniform exploration with budget to spare
    assert decisions[0].probs == pytest.approx([1 / 3] * 3)


# --- checkpoints ----------------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_mismatches(catalog, tmp_path):
    router = rl(catalog, seed=1)
    router.learn([Experience(embedding=e, expert=0, reward=1.0, quality=1.0) for e in embeddings(4)])
    router.save(tmp_path / "ckpt")
    fresh = build_strategy(
        "rl", catalog, {"embedding_dim": DIM, "hidden": [16, 16], "checkpoint": str(tmp_path / "ckpt")}
    )
    fresh.setup()
    x = contexts(embeddings(6))
    assert np.array_equal(fresh.score(x), router.score(x))
    assert fresh.policy_version == router.policy_version == 1
    assert np.array_equal(
        fresh.q_values(fresh.observations(x), "online"), router.q_values(router.observations(x), "online")
    )
    with pytest.raises(CheckpointError, match="architecture"):
        rl(catalog, hidden=[32, 16]).load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="architecture"):
        rl(catalog, embedding_dim=DIM + 1).load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="experts"):
        rl(catalog_from_table(table(), models=MODELS[::-1])).load(tmp_path / "ckpt")


# --- learning -------------------------------------------------------------------------------------------
def test_td_step_targets_the_reward_of_one_step_episodes(catalog):
    router = rl(catalog, tau=1.0)
    optimizer = torch.optim.Adam(router.online.parameters(), lr=1e-2)
    obs = torch.from_numpy(state_features(embeddings(2), 1.0, ObjectiveWeights().as_array()))
    actions, rewards = torch.tensor([0, 2]), torch.tensor([0.7, -0.3])
    for _ in range(200):
        router.td_step(obs, actions, rewards, optimizer)
    q = router.q_values(obs.numpy())  # tau=1: the served target net equals the online one
    assert q[[0, 1], [0, 2]] == pytest.approx([0.7, -0.3], abs=0.02)


def test_learn_moves_the_policy_toward_the_best_expert(catalog):
    """Expert 0 answers prompts with x0 < 0, expert 1 those with x0 > 0, expert 2 nothing."""
    router = rl(catalog, seed=0, learning_rate=5e-3, tau=0.2, relabel_weights=2)
    rng = np.random.default_rng(0)
    test_x = embeddings(200, seed=1)
    best = np.where(test_x[:, 0] < 0, 0, 1)

    def accuracy() -> float:
        chosen = [catalog.index(d.expert) for d in router.route_batch(contexts(test_x))]
        return float(np.mean(np.array(chosen) == best))

    before = accuracy()
    for _ in range(60):
        x = rng.normal(size=(64, DIM)).astype(np.float32)
        experts = rng.integers(0, 3, size=64)
        quality = ((experts == 0) & (x[:, 0] < 0)) | ((experts == 1) & (x[:, 0] > 0))
        metrics = router.learn(
            [
                Experience(embedding=e, expert=int(a), reward=0.0, quality=float(q))
                for e, a, q in zip(x, experts, quality)
            ]
        )
    assert set(metrics) == {"loss", "td_error"}
    assert accuracy() > max(0.85, before)
    with pytest.raises(ValueError, match="expert index"):
        router.learn([Experience(embedding=test_x[0], expert=3, reward=1.0, quality=1.0)])


@pytest.mark.data
def test_fit_from_table_on_a_slice_of_routerbench(routerbench_dir):
    """Real outcomes of two tasks, embeddings that only tell the task apart: the DQN should pick each task's
    best expert when quality is all that counts, and the cheapest when cost dominates."""
    from training.trainers.train_rl import fit_from_table

    models = ["meta/llama-2-70b-chat", "meta/code-llama-instruct-34b-chat", "mistralai/mistral-7b-chat"]
    full = load_routerbench([routerbench_dir / "mbpp_train.csv", routerbench_dir / "arc_challenge_train.csv"], models)
    data = full.split(test_fraction=300 / len(full), seed=0)[1]
    rng = np.random.default_rng(0)
    task_axis = np.array([[1.0 if t == "mbpp" else -1.0] for t in data.tasks], dtype=np.float32)
    x = np.hstack([task_axis, 0.1 * rng.normal(size=(len(data), DIM - 1))]).astype(np.float32)
    catalog = catalog_from_table(data)
    options = dict(total_steps=8000, hidden="32,32", learning_rate=2e-3, val_fraction=0.0, progress=False)
    router = fit_from_table(data, x, catalog, **options)
    tasks = np.array(data.tasks)
    chosen = np.array([catalog.index(d.expert) for d in router.route_batch(contexts(x))])
    for task in ("mbpp", "arc-challenge"):
        best = int(np.argmax(data.scores[tasks == task].mean(0)))
        assert np.mean(chosen[tasks == task] == best) > 0.9
    pricey = router.route_batch(contexts(x, ObjectiveWeights(quality=1.0, cost=100.0)))
    assert {d.expert for d in pricey} == {catalog.names[2]}
    again = fit_from_table(data, x, catalog, **options)
    assert np.array_equal(again.score(contexts(x[:5])), router.score(contexts(x[:5])))


# --- budget windows: Double DQN across requests, the seed's trunk, old checkpoints ----------------------------
def test_double_dqn_target_bootstraps_with_the_online_choice_valued_by_the_target(catalog):
    router = rl(catalog, tau=1e-6)
    obs = torch.from_numpy(state_features(embeddings(3), 1.0, ObjectiveWeights().as_array()))
    next_obs = torch.from_numpy(state_features(embeddings(3, seed=1), 0.5, ObjectiveWeights().as_array(), 0.5))
    allowed = torch.tensor([[True, True, True], [False, True, True], [True, True, True]])
    dones = torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        online_next = router.online(next_obs).masked_fill(~allowed, -torch.inf)
        target_next = router.target(next_obs)
        picked = online_next.argmax(1)
        expected = torch.tensor([0.5, 0.2, 1.0]) + 0.9 * (1 - dones) * target_next[torch.arange(3), picked]
        q_before = router.online(obs).gather(1, torch.tensor([[0], [1], [2]])).squeeze(1)
    optimizer = torch.optim.SGD(router.online.parameters(), lr=0.0)  # no step: read the TD errors alone
    _, td = router.td_step(
        obs,
        torch.tensor([0, 1, 2]),
        torch.tensor([0.5, 0.2, 1.0]),
        optimizer,
        next_obs=next_obs,
        dones=dones,
        gamma=0.9,
        next_allowed=allowed,
    )
    assert td == pytest.approx((expected - q_before).numpy(), abs=1e-5)
    # gamma 0 (or no next state) is the one-step target: the reward.
    _, td0 = router.td_step(obs, torch.tensor([0, 1, 2]), torch.tensor([0.5, 0.2, 1.0]), optimizer, gamma=0.0)
    assert td0 == pytest.approx((torch.tensor([0.5, 0.2, 1.0]) - q_before).numpy(), abs=1e-5)


def test_window_left_is_part_of_the_state(catalog):
    router = rl(catalog)
    x = embeddings(2)
    early = [RouteContext(text="p", embedding=e, carbon_budget_left=0.5, window_left=1.0) for e in x]
    late = [RouteContext(text="p", embedding=e, carbon_budget_left=0.5, window_left=0.1) for e in x]
    assert router.observations(late)[:, DIM + 1].tolist() == pytest.approx([0.1, 0.1])
    assert not np.allclose(router.score(early), router.score(late))


def test_the_seeds_trunk_batchnorm_and_dropout_serves_single_requests_and_round_trips(catalog, tmp_path):
    router = rl(catalog, batch_norm=True, dropout=0.2, tau=0.5)
    kinds = {type(m).__name__ for m in router.online.trunk}
    assert {"BatchNorm1d", "Dropout"} <= kinds
    router.learn([Experience(embedding=e, expert=1, reward=0.0, quality=1.0) for e in embeddings(8)])
    # The soft update carries BatchNorm's running statistics into the served network too.
    online_stats = [b for b in router.online.buffers() if b.is_floating_point()]
    served_stats = [b for b in router.target.buffers() if b.is_floating_point()]
    assert all(not torch.equal(s, torch.zeros_like(s)) for s in served_stats[:1])
    assert len(online_stats) == len(served_stats) > 0
    one = contexts(embeddings(1))
    assert np.array_equal(router.score(one), router.score(one))  # eval mode: no dropout, running statistics
    router.save(tmp_path / "bn")
    fresh = rl(catalog, batch_norm=True, dropout=0.2)
    fresh.load(tmp_path / "bn")
    assert np.allclose(fresh.score(one), router.score(one))
    with pytest.raises(CheckpointError, match="batch_norm: checkpoint True, router False"):
        rl(catalog).load(tmp_path / "bn")


def test_a_checkpoint_from_before_window_left_is_refused_naming_the_difference(catalog, tmp_path):
    import json

    router = rl(catalog)
    router.save(tmp_path / "old")
    meta_file = tmp_path / "old" / "meta.json"
    meta = json.loads(meta_file.read_text())
    old = dict(meta["architecture"], input_dim=DIM + 5)  # the layout before window_left, and no trunk options
    old["state"] = [s for s in old["state"] if s != "window_left"]
    del old["batch_norm"], old["dropout"]
    meta_file.write_text(json.dumps(dict(meta, architecture=old)))
    with pytest.raises(CheckpointError, match=r"input_dim: checkpoint 13, router 14.*retrain") as error:
        rl(catalog).load(tmp_path / "old")
    assert "'window_left'" in str(error.value) and "batch_norm: checkpoint '(absent)'" in str(error.value)
