"""The mixture-of-experts router: gating maths, routing, checkpoints, online learning and offline training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from router_deployments.checkpoints import META_FILE, WEIGHTS_FILE, CheckpointError
from router_deployments.networks import load_balancing_loss, noisy_gates, top_k_gates
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import Experience, RouteContext, build_strategy
from router_deployments.strategies.moe import MoEConfig, MoEStrategy
from training.data.routerbench import OutcomeTable, catalog_from_table, load_routerbench

DIM = 8
MODELS = ["org/big-70b", "org/mid-13b", "org/small-7b"]


def table(n: int = 3) -> OutcomeTable:
    scores = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]] * n, dtype=np.float32)
    costs = np.tile(np.array([[1e-3, 3e-4, 1e-4]], dtype=np.float32), (len(scores), 1))
    return OutcomeTable(
        sample_ids=[f"s{i}" for i in range(len(scores))],
        prompts=[f"prompt {i}" for i in range(len(scores))],
        tasks=["t"] * len(scores),
        models=list(MODELS),
        scores=scores,
        costs=costs,
    )


@pytest.fixture
def catalog():
    return catalog_from_table(table())


def moe(catalog, **overrides) -> MoEStrategy:
    return MoEStrategy(catalog, MoEConfig(**{"embedding_dim": DIM, "hidden": [16], **overrides}))


def contexts(embeddings, weights=None):
    weights = weights or ObjectiveWeights()
    return [RouteContext(text=f"p{i}", embedding=e, weights=weights) for i, e in enumerate(embeddings)]


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


# --- gating maths ---------------------------------------------------------------------------------------
def test_load_balancing_loss_is_the_squared_cv_of_importance():
    # importance = [2, 0]: mean 1, variance 1 -> 1
    assert float(load_balancing_loss(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))) == pytest.approx(1.0)
    # importance = [1.5, 0.5]: mean 1, variance 0.25 -> 0.25
    assert float(load_balancing_loss(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))) == pytest.approx(0.25)
    # perfectly balanced
    assert float(load_balancing_loss(torch.full((4, 3), 1 / 3))) == pytest.approx(0.0, abs=1e-7)


def test_top_k_gates_keep_the_k_largest_and_renormalise():
    gates = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    sparse = top_k_gates(gates, 2)
    assert sparse[0].tolist() == pytest.approx([0.625, 0.375, 0.0])
    assert sparse[1, 2] == pytest.approx(0.8 / 0.9)
    assert (sparse > 0).sum(1).tolist() == [2, 2]


def test_gate_noise_and_temperature():
    logits = torch.tensor([[2.0, 0.0]])
    assert torch.allclose(noisy_gates(logits), torch.softmax(logits, -1))
    assert noisy_gates(logits, temperature=0.1)[0, 0] > noisy_gates(logits, temperature=10.0)[0, 0]
    g = torch.Generator().manual_seed(0)
    noisy = noisy_gates(logits.repeat(200, 1), noise_std=3.0, generator=g)
    assert (noisy.argmax(1) == 1).any()  # the noise lets the weaker expert win sometimes


# --- routing --------------------------------------------------------------------------------------------
def test_scores_decisions_and_fanout_shapes(catalog):
    router = moe(catalog, top_k=2)
    scores = router.score(contexts(embeddings(5)))
    assert scores.shape == (5, 3)
    assert np.exp(scores).sum(1) == pytest.approx(np.ones(5))  # log of gates that sum to one
    decisions = router.route_batch(contexts(embeddings(5)))
    for d, s in zip(decisions, scores):
        assert len(d.fanout) == 2 and d.fanout[0] == d.expert
        assert d.expert == catalog.names[int(np.argmax(s))]
        assert sum(d.probs) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="top_k"):
        moe(catalog, top_k=4)


def test_same_seed_same_router_and_other_seed_differs(catalog):
    x = contexts(embeddings(4))
    assert np.array_equal(moe(catalog, seed=3).score(x), moe(catalog, seed=3).score(x))
    assert not np.allclose(moe(catalog, seed=3).score(x), moe(catalog, seed=4).score(x))


def test_cost_weight_moves_traffic_to_cheaper_experts(catalog):
    router = moe(catalog)
    x = embeddings(50)
    cost_of = {n: c for n, c in zip(catalog.names, router.profile.cost_norm)}

    def mean_cost(weight: float) -> float:
        decisions = router.route_batch(contexts(x, ObjectiveWeights(quality=1.0, cost=weight)))
        return float(np.mean([cost_of[d.expert] for d in decisions]))

    assert mean_cost(100.0) < mean_cost(0.0)
    assert mean_cost(100.0) == pytest.approx(min(cost_of.values()))


def test_wrong_embedding_width_is_an_error(catalog):
    with pytest.raises(ValueError, match="embedding dim"):
        moe(catalog).score(contexts(np.zeros((1, DIM + 1), np.float32)))


# --- checkpoints ----------------------------------------------------------------------------------------
def test_checkpoint_round_trip(catalog, tmp_path):
    router = moe(catalog, seed=1, top_k=2)
    router.policy_version = 7
    router.save(tmp_path / "ckpt", metrics={"note": "test"})
    fresh = build_strategy(
        "moe", catalog, {"embedding_dim": DIM, "hidden": [16], "top_k": 2, "checkpoint": str(tmp_path / "ckpt")}
    )
    fresh.setup()
    x = contexts(embeddings(6))
    assert np.array_equal(fresh.score(x), router.score(x))
    assert fresh.policy_version == 7


def test_mismatched_or_corrupt_checkpoints_are_refused(catalog, tmp_path):
    path = tmp_path / "ckpt"
    moe(catalog).save(path)
    with pytest.raises(CheckpointError, match="architecture"):
        moe(catalog, hidden=[32]).load(path)
    with pytest.raises(CheckpointError, match="architecture"):
        MoEStrategy(catalog, MoEConfig(embedding_dim=DIM, hidden=[16], top_k=2)).load(path)
    other = catalog_from_table(table(), models=list(reversed(MODELS)))
    with pytest.raises(CheckpointError, match="experts"):
        moe(other).load(path)
    from router_deployments.strategies.rl import RLConfig, RLStrategy

    with pytest.raises(CheckpointError, match="strategy"):
        RLStrategy(catalog, RLConfig(embedding_dim=DIM, hidden=[16])).load(path)
    (path / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        moe(catalog).load(path)
    (path / META_FILE).write_text("{")
    with pytest.raises(CheckpointError):
        moe(catalog).load(path)


# --- learning -------------------------------------------------------------------------------------------
def test_learn_moves_the_gate_toward_the_best_expert():
    """Expert 0 answers prompts with x0 < 0, expert 1 those with x0 > 0, expert 2 nothing; bandit feedback
    from uniformly random routing is enough to learn it."""
    catalog = catalog_from_table(table())
    router = moe(catalog, seed=0, learning_rate=1e-2, dropout=0.0)
    rng = np.random.default_rng(0)
    test_x = embeddings(200, seed=1)
    best = np.where(test_x[:, 0] < 0, 0, 1)

    def accuracy() -> float:
        chosen = [catalog.index(d.expert) for d in router.route_batch(contexts(test_x))]
        return float(np.mean(np.array(chosen) == best))

    before = accuracy()
    for _ in range(100):
        x = rng.normal(size=(64, DIM)).astype(np.float32)
        experts = rng.integers(0, 3, size=64)
        quality = ((experts == 0) & (x[:, 0] < 0)) | ((experts == 1) & (x[:, 0] > 0))
        metrics = router.learn(
            [
                Experience(embedding=e, expert=int(a), reward=float(q), quality=float(q))
                for e, a, q in zip(x, experts, quality)
            ]
        )
    assert set(metrics) == {"loss", "bce", "balance"}
    assert accuracy() > max(0.9, before)
    assert router.policy_version == 100
    with pytest.raises(ValueError, match="expert index"):
        router.learn([Experience(embedding=test_x[0], expert=5, reward=1.0, quality=1.0)])


def test_learn_is_reproducible_whatever_torch_global_seed():
    """Dropout in learn() draws from the strategy's own seeded generator, not torch's global one (which torch
    seeds at random per process), so the same seed and experiences give the same weights."""
    catalog = catalog_from_table(table())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, DIM)).astype(np.float32)
    batch = [Experience(embedding=e, expert=int(i % 3), reward=1.0, quality=1.0) for i, e in enumerate(x)]
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        router = moe(catalog, seed=0, dropout=0.5)
        for _ in range(3):
            router.learn(batch)
        states.append(router.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    other = moe(catalog, seed=1, dropout=0.5)
    other.learn(batch)
    assert not all(torch.equal(states[0][k], other.state_dict()[k]) for k in states[0])


@pytest.mark.data
def test_fit_from_table_on_a_slice_of_routerbench(routerbench_dir):
    """Real outcomes of two tasks; the embedding only says which task a prompt is from (plus noise), so the best
    the router can learn is each task's best expert, which it should."""
    from training.trainers.train_moe import fit_from_table

    models = ["meta/llama-2-70b-chat", "meta/code-llama-instruct-34b-chat", "mistralai/mistral-7b-chat"]
    full = load_routerbench([routerbench_dir / "mbpp_train.csv", routerbench_dir / "arc_challenge_train.csv"], models)
    data = full.split(test_fraction=300 / len(full), seed=0)[1]
    rng = np.random.default_rng(0)
    task_axis = np.array([[1.0 if t == "mbpp" else -1.0] for t in data.tasks], dtype=np.float32)
    x = np.hstack([task_axis, 0.1 * rng.normal(size=(len(data), DIM - 1))]).astype(np.float32)
    catalog = catalog_from_table(data)
    router = fit_from_table(data, x, catalog, epochs=40, hidden="32", progress=False)
    chosen = np.array([catalog.index(d.expert) for d in router.route_batch(contexts(x))])
    tasks = np.array(data.tasks)
    for task in ("mbpp", "arc-challenge"):
        best = int(np.argmax(data.scores[tasks == task].mean(0)))
        assert np.mean(chosen[tasks == task] == best) > 0.9
    again = fit_from_table(data, x, catalog, epochs=40, hidden="32", progress=False)
    assert np.array_equal(again.score(contexts(x[:5])), router.score(contexts(x[:5])))
