"""The kNN, task and oracle reference routers: predictions, weights, determinism and checkpoints."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from router_deployments.checkpoints import WEIGHTS_FILE, CheckpointError
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext, build_strategy
from router_deployments.strategies.knn import KnnConfig, KnnStrategy
from router_deployments.strategies.oracle import OracleStrategy, UnknownPromptError
from router_deployments.strategies.task import TaskStrategy
from training.data.routerbench import OutcomeTable, catalog_from_table, load_routerbench

MODELS = ["org/big-70b", "org/small-7b"]


def tiny_table() -> OutcomeTable:
    """Two experts: the big one is right on prompts 0-2, the small one on 0 and 3; big costs 10x more."""
    scores = np.array([[1, 1], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    costs = np.array([[1e-3, 1e-4]] * 4, dtype=np.float32)
    return OutcomeTable(
        sample_ids=[f"s{i}" for i in range(4)],
        prompts=[f"prompt {i}" for i in range(4)],
        tasks=["t"] * 4,
        models=list(MODELS),
        scores=scores,
        costs=costs,
    )


def tiny_embeddings() -> np.ndarray:
    # Prompts 0-2 point one way, prompt 3 the other.
    return np.array([[1, 0.1], [1, 0.0], [1, -0.1], [-1, 0.0]], dtype=np.float32)


@pytest.fixture
def catalog():
    return catalog_from_table(tiny_table())


def contexts(embeddings, weights=None, texts=None):
    weights = weights or ObjectiveWeights()
    texts = texts or [f"prompt {i}" for i in range(len(embeddings))]
    return [RouteContext(text=t, embedding=e, weights=weights) for t, e in zip(texts, embeddings)]


def fitted_knn(catalog, k=3) -> KnnStrategy:
    return KnnStrategy(catalog, KnnConfig(k=k)).fit(tiny_embeddings(), tiny_table().scores)


def test_catalog_from_table_prices_the_typical_call_at_the_mean_recorded_cost(catalog):
    from router_deployments.objectives import ExpertProfile

    assert catalog.names == ["big-70b", "small-7b"]
    assert [e.backend.model for e in catalog.experts] == MODELS
    assert ExpertProfile(catalog).cost == pytest.approx([1e-3, 1e-4])
    assert [e.quality_prior for e in catalog.experts] == pytest.approx([0.75, 0.5])
    assert catalog.experts[0].energy_per_token_j == pytest.approx(10 * catalog.experts[1].energy_per_token_j)


def test_knn_predicts_mean_score_of_nearest_prompts(catalog):
    knn = fitted_knn(catalog, k=3)
    quality = knn.predict_quality(np.array([[1, 0.05], [-1, 0.01]]))
    # The first query's nearest prompts are 0, 1, 2: big is right on all three, small on one.
    assert quality[0] == pytest.approx([1.0, 1 / 3])
    assert quality.shape == (2, 2)
    scores = knn.score(contexts([[1, 0.05], [-1, 0.01]]))
    assert scores.shape == (2, 2)
    assert [d.expert for d in knn.route_batch(contexts([[1, 0.05]]))] == ["big-70b"]


def test_knn_cost_weight_moves_traffic_to_the_cheap_expert(catalog):
    knn = fitted_knn(catalog, k=3)
    query = [[1, 0.05]]
    assert knn.route(contexts(query)[0]).expert == "big-70b"
    cheap = knn.route(contexts(query, ObjectiveWeights(quality=1, cost=1.0))[0])
    assert cheap.expert == "small-7b"  # 1.0 - 1.0 < 1/3 - 0.1


def test_knn_breaks_quality_ties_towards_the_cheaper_expert(catalog):
    knn = KnnStrategy(catalog, KnnConfig(k=1)).fit(tiny_embeddings(), tiny_table().scores)
    assert knn.route(contexts([[1, 0.1]])[0]).expert == "small-7b"  # prompt 0: both right


def test_knn_is_deterministic(catalog):
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(16, 2))
    a = fitted_knn(catalog).score(contexts(queries))
    b = fitted_knn(catalog).score(contexts(queries))
    np.testing.assert_array_equal(a, b)


def test_knn_without_index_fails_loudly(catalog):
    with pytest.raises(RuntimeError, match="no index"):
        KnnStrategy(catalog).score(contexts([[1, 0]]))
    with pytest.raises(ValueError, match="columns"):
        KnnStrategy(catalog).fit(tiny_embeddings(), np.zeros((4, 3)))


def test_knn_checkpoint_round_trip_through_the_registry(catalog, tmp_path):
    knn = fitted_knn(catalog)
    knn.save(tmp_path / "ckpt", metrics={"note": "test"})
    loaded = build_strategy("knn", catalog, {"k": 3, "checkpoint": str(tmp_path / "ckpt")})
    loaded.setup()
    queries = np.random.default_rng(1).normal(size=(8, 2))
    np.testing.assert_allclose(loaded.score(contexts(queries)), knn.score(contexts(queries)))
    assert loaded.policy_version == knn.policy_version


def test_knn_rejects_corrupt_or_mismatched_checkpoints(catalog, tmp_path):
    fitted_knn(catalog).save(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="architecture"):
        KnnStrategy(catalog, KnnConfig(k=5)).load(tmp_path / "ckpt")
    other = catalog_from_table(tiny_table(), ["org/small-7b", "org/big-70b"])
    with pytest.raises(CheckpointError, match="experts"):
        KnnStrategy(other, KnnConfig(k=3)).load(tmp_path / "ckpt")
    (tmp_path / "ckpt" / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        KnnStrategy(catalog, KnnConfig(k=3)).load(tmp_path / "ckpt")


def test_knn_rejects_a_checkpoint_whose_index_does_not_fit(catalog, tmp_path):
    import torch

    from router_deployments.checkpoints import save_checkpoint

    meta = {"strategy": "knn", "experts": catalog.names, "architecture": {"k": 3, "metric": "cosine"}}
    save_checkpoint(tmp_path / "bad", {"embeddings": torch.zeros(4, 2), "scores": torch.zeros(3, 2)}, meta)
    with pytest.raises(CheckpointError, match="does not fit"):
        KnnStrategy(catalog, KnnConfig(k=3)).load(tmp_path / "bad")


def test_oracle_picks_the_cheapest_expert_with_the_best_true_score(catalog):
    table = tiny_table()
    oracle = OracleStrategy(catalog).set_outcomes(table.prompts, table.scores, table.costs)
    chosen = [d.expert for d in oracle.route_batch(contexts(np.zeros((4, 2))))]
    assert chosen == ["small-7b", "big-70b", "big-70b", "small-7b"]
    # At cost weight 2 the big expert's right answer is worth 1 - 2 * 1.0, less than the small one's wrong one.
    pricey = ObjectiveWeights(quality=1, cost=2.0)
    assert [d.expert for d in oracle.route_batch(contexts(np.zeros((4, 2)), pricey))][1] == "small-7b"


def test_oracle_uses_the_recorded_cost_of_each_call(catalog):
    # Here the "big" expert happened to be cheaper on prompt 0: with per-call costs the oracle follows that.
    table = tiny_table()
    costs = table.costs.copy()
    costs[0] = [1e-5, 1e-4]
    oracle = OracleStrategy(catalog).set_outcomes(table.prompts, table.scores, costs)
    assert oracle.route(contexts(np.zeros((1, 2)))[0]).expert == "big-70b"


def test_oracle_refuses_unknown_prompts(catalog):
    table = tiny_table()
    oracle = OracleStrategy(catalog).set_outcomes(table.prompts, table.scores)
    with pytest.raises(UnknownPromptError, match="no recorded outcomes"):
        oracle.route(RouteContext(text="never seen", embedding=np.zeros(2)))


def two_task_reference(catalog) -> TaskStrategy:
    """Task "a" (prompts 0-2): big right 3/3, small 1/3. Task "b" (prompt 3): only small is right."""
    table = tiny_table()
    task = TaskStrategy(catalog).fit(["a", "a", "a", "b"], table.scores, table.costs)
    return task.set_prompt_tasks(["qa", "qb"], ["a", "b"])


def test_task_reference_routes_by_each_experts_mean_on_the_prompts_task(catalog):
    task = two_task_reference(catalog)
    assert task.quality["a"] == pytest.approx([1.0, 1 / 3])
    assert task.quality["b"] == pytest.approx([0.0, 1.0])
    assert [task.route(contexts(np.zeros((1, 2)), texts=[t])[0]).expert for t in ("qa", "qb")] == [
        "big-70b",
        "small-7b",
    ]
    # Cost weight 1: big's 2/3 edge on task a is worth less than its extra cost (1.0 - 0.1 of the scale).
    pricey = ObjectiveWeights(quality=1, cost=1.0)
    assert task.route(contexts(np.zeros((1, 2)), pricey, texts=["qa"])[0]).expert == "small-7b"
    # Ties go to the cheaper expert.
    tied = TaskStrategy(catalog).fit(["t"], np.array([[1.0, 1.0]]), np.array([[1e-3, 1e-4]]))
    assert tied.set_prompt_tasks(["q"], ["t"]).route(contexts(np.zeros((1, 2)), texts=["q"])[0]).expert == "small-7b"


def test_task_reference_uses_the_tasks_mean_recorded_cost(catalog):
    # On task "cheap" the big expert happened to cost as little as the small one: it wins at any cost weight.
    scores = np.array([[1, 0], [1, 1]], dtype=np.float32)
    costs = np.array([[1e-4, 1e-4], [1e-3, 1e-4]], dtype=np.float32)
    task = TaskStrategy(catalog).fit(["cheap", "dear"], scores, costs).set_prompt_tasks(["q"], ["cheap"])
    assert task.route(contexts(np.zeros((1, 2)), ObjectiveWeights(cost=50.0), texts=["q"])[0]).expert == "big-70b"


def test_task_reference_errors(catalog):
    task = two_task_reference(catalog)
    with pytest.raises(UnknownPromptError, match="no task label"):
        task.route(RouteContext(text="never seen", embedding=np.zeros(2)))
    # A task it has no training prompts for is routed by the mean over all of them (big: 3/4, small: 2/4).
    task.set_prompt_tasks(["qc"], ["c"])
    assert task.route(contexts(np.zeros((1, 2)), texts=["qc"])[0]).expert == "big-70b"
    with pytest.raises(RuntimeError, match="not fitted"):
        TaskStrategy(catalog).set_prompt_tasks(["q"], ["a"])
    with pytest.raises(ValueError, match="task labels"):
        task.set_prompt_tasks(["q", "r"], ["a"])
    with pytest.raises(ValueError, match="shape"):
        TaskStrategy(catalog).fit(["a"], np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        TaskStrategy(catalog).route(RouteContext(text="q", embedding=np.zeros(2)))


@pytest.mark.data
def test_oracle_matches_routerbench_oracle_column(routerbench_dir):
    path = routerbench_dir / "mbpp_train.csv"
    table = load_routerbench(path)
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as fh:
        expected = [row["oracle_model_to_route_to"] for row in csv.DictReader(fh)]
    catalog = catalog_from_table(table)
    oracle = OracleStrategy(catalog).set_outcomes(table.prompts, table.scores, table.costs)
    decisions = oracle.route_batch(contexts(np.zeros((len(table), 2)), texts=table.prompts))
    chosen = [table.models[catalog.index(d.expert)] for d in decisions]
    solved = [i for i, e in enumerate(expected) if e != "no_model_correct"]
    assert len(solved) > 250
    assert all(chosen[i] == expected[i] for i in solved)
