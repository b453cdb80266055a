"""BERT router: batch scoring, seeds, weights, checkpoints, targets and training (tiny encoders, fast)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from experts.catalog import ExpertCatalog, ExpertSpec, ReplayBackendConfig
from router_deployments.checkpoints import META_FILE, WEIGHTS_FILE, CheckpointError
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext, build_strategy
from router_deployments.strategies.bert import BertRouterConfig, BertStrategy
from tests.tiny_bert import save_tiny_bert
from training.data.routerbench import OutcomeTable, catalog_from_table, load_routerbench
from training.trainers import train_bert

REPO = Path(__file__).resolve().parents[4]
SIZES = (70.0, 34.0, 13.0, 7.0)
PRICES = (0.9, 0.8, 0.3, 0.2)


def make_catalog(n: int = 4) -> ExpertCatalog:
    return ExpertCatalog(
        experts=[
            ExpertSpec(
                name=f"m{i}",
                backend=ReplayBackendConfig(data="", model=f"m{i}"),
                params_b=SIZES[i],
                price_in_per_1k=PRICES[i],
                price_out_per_1k=PRICES[i],
                energy_per_token_j=SIZES[i] * 0.05,
                expected_latency_s=1.0,
                quality_prior=0.5,
            )
            for i in range(n)
        ]
    )


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, built from scratch (no hub, fast to fine-tune)."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def make_router(encoder: str, catalog: ExpertCatalog | None = None, **config) -> BertStrategy:
    router = BertStrategy(catalog or make_catalog(), BertRouterConfig(encoder=encoder, max_length=32, **config))
    router.setup()
    return router


def contexts(texts: list[str], weights: ObjectiveWeights | None = None) -> list[RouteContext]:
    return [
        RouteContext(text=t, embedding=np.zeros(3, np.float32), weights=weights or ObjectiveWeights()) for t in texts
    ]


TEXTS = ["Write a Python function to sort a list.", "Translate 'hello' into French.", "Explain entropy.", "Hi"]


def test_scores_a_batch_in_catalog_order(tiny_encoder):
    router = make_router(tiny_encoder)
    scores = router.score(contexts(TEXTS))
    assert scores.shape == (4, 4)
    probs = router.predict_proba(TEXTS)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # Quality-only weights: the score is the probability (minus a tiny cost tie-break).
    assert np.allclose(scores, probs, atol=1e-5)
    assert [d.expert for d in router.route_batch(contexts(TEXTS))] == [f"m{i}" for i in scores.argmax(1)]


def test_batch_scores_equal_one_by_one_scores(tiny_encoder):
    router = make_router(tiny_encoder)
    batch = router.score(contexts(TEXTS))
    singles = np.concatenate([router.score(contexts([t])) for t in TEXTS])
    assert np.allclose(batch, singles, atol=1e-5)


def test_same_seed_same_router_other_seed_other_head(tiny_encoder):
    a, b = make_router(tiny_encoder, seed=1), make_router(tiny_encoder, seed=1)
    c = make_router(tiny_encoder, seed=2)
    assert np.array_equal(a.score(contexts(TEXTS)), b.score(contexts(TEXTS)))
    assert not np.allclose(a.score(contexts(TEXTS)), c.score(contexts(TEXTS)))


def test_truncation_keeps_the_end_of_the_prompt(tiny_encoder):
    router = make_router(tiny_encoder)
    question = " Question: which planet of the solar system is the largest one, and by how much?" * 3  # > 32 tokens
    long_a, long_b = "alpha " * 200 + question, "beta gamma " * 200 + question
    probs = router.predict_proba([long_a, long_b, long_a + " Answer briefly in one word please."])
    assert np.allclose(probs[0], probs[1], atol=1e-6)  # the prefixes differ but were cut away
    assert not np.allclose(probs[0], probs[2], atol=1e-6)  # the endings differ


def test_cost_weight_moves_choices_to_cheaper_experts(tiny_encoder):
    router = make_router(tiny_encoder)
    costs = router.profile.cost
    spent = []
    for w in (0.0, 0.1, 0.5, 2.0, 10.0):
        chosen = router.score(contexts(TEXTS, ObjectiveWeights(cost=w))).argmax(1)
        spent.append(costs[chosen].sum())
    assert all(later <= earlier + 1e-9 for earlier, later in zip(spent, spent[1:]))
    assert spent[-1] == pytest.approx(4 * costs.min())


def test_registry_builds_bert_and_rejects_unknown_options(tiny_encoder):
    router = build_strategy("bert", make_catalog(), {"encoder": tiny_encoder, "max_length": 32})
    assert isinstance(router, BertStrategy)
    with pytest.raises(ValidationError):
        build_strategy("bert", make_catalog(), {"encoder": tiny_encoder, "max_lenght": 32})


def test_score_before_setup_is_an_error(tiny_encoder):
    with pytest.raises(RuntimeError, match="setup"):
        BertStrategy(make_catalog(), BertRouterConfig(encoder=tiny_encoder)).score(contexts(TEXTS))


# --- checkpoints ---------------------------------------------------------------------------------------------
def _perturbed(encoder: str) -> BertStrategy:
    import torch

    router = make_router(encoder)
    with torch.no_grad():  # stands in for training: the checkpoint must carry encoder and head
        for p in router.network.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return router


def test_checkpoint_round_trip_restores_encoder_and_head(tiny_encoder, tmp_path):
    trained = _perturbed(tiny_encoder)
    trained.policy_version = 3
    path = trained.save(tmp_path / "ckpt", metrics={"val_quality": 0.7})
    meta = json.loads((path / META_FILE).read_text())
    assert meta["architecture"] == {
        "encoder": tiny_encoder, "max_length": 32, "dropout": 0.1, "n_experts": 4, "pooling": "mean",
    }  # fmt: skip
    assert any(k.startswith("encoder.") for k in trained.state_dict()) and "head.weight" in trained.state_dict()

    restored = make_router(tiny_encoder, checkpoint=str(path))
    assert restored.policy_version == 3
    assert np.allclose(restored.score(contexts(TEXTS)), trained.score(contexts(TEXTS)), atol=1e-6)
    assert not np.allclose(make_router(tiny_encoder).score(contexts(TEXTS)), trained.score(contexts(TEXTS)))


def test_mismatched_checkpoints_are_errors(tiny_encoder, tmp_path):
    path = _perturbed(tiny_encoder).save(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="architecture"):
        BertStrategy(
            make_catalog(), BertRouterConfig(encoder=tiny_encoder, max_length=64, checkpoint=str(path))
        ).setup()
    with pytest.raises(CheckpointError, match="experts"):
        make_router(tiny_encoder, catalog=make_catalog(3), checkpoint=str(path))
    with pytest.raises(CheckpointError, match="strategy"):
        meta = json.loads((path / META_FILE).read_text())
        other = tmp_path / "other"
        other.mkdir()
        (other / WEIGHTS_FILE).write_bytes((path / WEIGHTS_FILE).read_bytes())
        (other / META_FILE).write_text(json.dumps({**meta, "strategy": "knn"}))
        make_router(tiny_encoder, checkpoint=str(other))


def test_checkpoint_with_missing_tensors_is_an_error(tiny_encoder, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _perturbed(tiny_encoder).save(tmp_path / "ckpt")
    tensors = load_file(str(path / WEIGHTS_FILE))
    del tensors["head.bias"]
    save_file(tensors, str(path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="does not fit"):
        make_router(tiny_encoder, checkpoint=str(path))


def test_corrupt_checkpoint_is_an_error(tiny_encoder, tmp_path):
    path = _perturbed(tiny_encoder).save(tmp_path / "ckpt")
    (path / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        make_router(tiny_encoder, checkpoint=str(path))
    with pytest.raises(CheckpointError, match="does not exist"):
        make_router(tiny_encoder, checkpoint=str(tmp_path / "nowhere"))


# --- targets and training ------------------------------------------------------------------------------------
def _table(scores, costs) -> OutcomeTable:
    scores, costs = np.asarray(scores, np.float32), np.asarray(costs, np.float32)
    n, m = scores.shape
    return OutcomeTable(
        sample_ids=[str(i) for i in range(n)],
        prompts=[f"prompt {i}" for i in range(n)],
        tasks=["t"] * n,
        models=[f"m{i}" for i in range(m)],
        scores=scores,
        costs=costs,
    )


def test_best_value_targets_share_or_break_ties_to_the_cheaper():
    table = _table([[1, 1, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]], [[4, 3, 2, 1], [4, 3, 2, 1], [4, 3, 2, 1]])
    catalog = make_catalog()
    share = train_bert.best_value_targets(table, catalog, ObjectiveWeights(), "share")
    assert np.allclose(share, [[1 / 3, 1 / 3, 0, 1 / 3], [0.25] * 4, [0, 1, 0, 0]])
    cheaper = train_bert.best_value_targets(table, catalog, ObjectiveWeights(), "cheaper")
    assert np.array_equal(cheaper.argmax(1), [3, 3, 1])
    # A cost weight makes the cheaper of two good experts the only best one.
    costly = train_bert.best_value_targets(table, catalog, ObjectiveWeights(cost=0.1), "share")
    assert np.array_equal(costly.argmax(1), [3, 3, 1]) and costly[0, 3] == 1.0


def test_add_arguments_and_fit_options_follow_args():
    parser = argparse.ArgumentParser()
    train_bert.add_arguments(parser)
    options = vars(parser.parse_args(["--loss", "focal", "--max-length", "64"]))
    args = train_bert.Args(**options)
    assert (args.loss, args.max_length, args.epochs) == ("focal", 64, train_bert.Args().epochs)
    with pytest.raises(SystemExit):
        parser.parse_args(["--loss", "hinge"])
    with pytest.raises(TypeError):
        train_bert.Args(nonsense=1)
    with pytest.raises(ValueError, match="Available options"):
        train_bert.Args(label_ties="random")


def test_freeze_lower_layers(tiny_encoder):
    router = make_router(tiny_encoder)
    train_bert.freeze_lower_layers(router.network["encoder"], 1)
    encoder = router.network["encoder"]
    assert not any(p.requires_grad for p in encoder.embeddings.parameters())
    assert not any(p.requires_grad for p in encoder.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in encoder.encoder.layer[1].parameters())
    with pytest.raises(ValueError, match="only 2 layers"):
        train_bert.freeze_lower_layers(encoder, 3)


def test_synthetic_training_learns_the_categories(tiny_encoder):
    options = dict(encoder=tiny_encoder, max_length=32, epochs=3, lr=1e-3, head_lr=5e-3, batch_size=16)
    router, metrics = train_bert.train_synthetic(
        make_catalog(), synthetic_per_category=40, loss="inter_intra", **options
    )
    assert metrics["n_train"] == 112 and metrics["n_val"] == 24 and len(metrics["history"]) == 3
    assert metrics["test_accuracy"] > 0.5  # 4 balanced classes: chance is 0.25
    assert router.policy_version == 1


def test_training_is_deterministic_with_a_seed(tiny_encoder):
    options = dict(encoder=tiny_encoder, max_length=32, epochs=1, synthetic_per_category=10, seed=5)
    a, _ = train_bert.train_synthetic(make_catalog(), **options)
    b, _ = train_bert.train_synthetic(make_catalog(), **options)
    assert np.array_equal(a.predict_proba(TEXTS), b.predict_proba(TEXTS))


@pytest.mark.data
def test_fit_from_table_on_a_slice_of_routerbench(routerbench_dir, tiny_encoder):
    table = load_routerbench(routerbench_dir / "mbpp_train.csv", ["meta/llama-2-70b-chat", "mistralai/mistral-7b-chat"])
    table = table.subset(np.arange(80))
    catalog = catalog_from_table(table)
    router = train_bert.fit_from_table(
        table, np.zeros((len(table), 4)), catalog, encoder=tiny_encoder, max_length=64, epochs=1, max_train_samples=40
    )
    scores = router.score(contexts(table.prompts[:5]))
    assert scores.shape == (5, 2) and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="do not match"):
        train_bert.fit_from_table(table, None, make_catalog(2), encoder=tiny_encoder)


@pytest.mark.data
def test_training_script_runs_end_to_end(routerbench_dir, tiny_encoder, tmp_path):
    """cleanrl-style smoke: the module's CLI trains on a slice, reports the held-out curve, writes a checkpoint."""
    out = tmp_path / "ckpt"
    cmd = [
        sys.executable, "-m", "training.trainers.train_bert", "--data", str(routerbench_dir / "mbpp_train.csv"),
        "--experts", "meta/llama-2-70b-chat,mistralai/mistral-7b-chat", "--encoder", tiny_encoder,
        "--max-length", "32", "--epochs", "1", "--max-train-samples", "32", "--cost-weights", "0,1", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert [p["cost_weight"] for p in report["holdout"]["points"]] == [0.0, 1.0]
    assert (out / WEIGHTS_FILE).is_file() and json.loads((out / META_FILE).read_text())["strategy"] == "bert"
