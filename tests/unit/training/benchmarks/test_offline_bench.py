"""`routerllm bench` and `routerllm train` end to end on a small slice of the shared RouterBench data."""

from __future__ import annotations

import json

import pytest

from router_deployments.strategies import build_strategy
from training import trainers
from training.benchmarks import offline as bench
from training.cli import build_parser, main
from training.data.routerbench import PRESETS, catalog_from_table, load_routerbench

pytestmark = pytest.mark.data


def test_bench_writes_results_and_plot(routerbench_dir, tmp_path, capsys, fake_embeddings):
    out = tmp_path / "bench"
    argv = ["bench", "--train", str(routerbench_dir), "--out", str(out), "--experts", "seed4"]
    argv += ["--limit", "120", "--strategies", "dummy,knn", "--set", "knn.k=5", "--save-checkpoints"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert (out / "cost_quality.png").stat().st_size > 10_000
    assert (out / "checkpoints" / "knn" / "meta.json").is_file()
    assert set(results["routers"]) == {"dummy", "knn", "task", "oracle"}
    assert results["n_train"] + results["n_eval"] == 120
    assert results["experts"] == [
        "llama-2-70b-chat",
        "code-llama-instruct-34b-chat",
        "WizardLM-13B-V1.2",
        "mistral-7b-chat",
    ]
    knn, oracle, dummy = (results["routers"][n] for n in ("knn", "oracle", "dummy"))
    assert len(knn["curve"]) == len(bench.cost_weights()) and len(dummy["curve"]) == 1
    assert sum(knn["default"]["shares"].values()) == pytest.approx(1.0)
    # The oracle is the ceiling: nothing beats its quality or its AIQ.
    for entry in [*results["routers"].values(), *results["single_experts"].values()]:
        assert 0 <= entry["aiq"] <= oracle["aiq"] + 1e-9
    assert oracle["default"]["quality"] >= max(e["quality"] for e in results["single_experts"].values())
    # The task reference routes each task to its best expert on the training part, one per task at cost weight 0.
    task = results["routers"]["task"]
    assert task["kind"] == "reference" and len(task["curve"]) == len(bench.cost_weights())
    assert 1 <= sum(share > 0 for share in task["default"]["shares"].values()) <= 3
    assert knn["latency_ms"]["p50"] > 0
    table = capsys.readouterr().out
    assert "knn" in table and "mistral-7b-chat" in table


def test_bench_runs_the_complexity_router_on_a_configured_classifier(routerbench_dir, tmp_path, fake_embeddings):
    """No hub here: a tiny two-label classifier stands in for grahamaco/question-complexity-classifier."""
    from tests.tiny_bert import save_tiny_bert

    model = save_tiny_bert(tmp_path / "clf", layers=1, classifier=True, num_labels=2, head_bias=[0.0, 3.0])
    out = tmp_path / "bench"
    argv = ["bench", "--train", str(routerbench_dir), "--out", str(out), "--experts", "seed4", "--limit", "80"]
    argv += ["--strategies", "complexity", "--set", f"complexity.model={model}", "--set", "dummy.seed=3"]
    assert main(argv) == 0
    complexity = json.loads((out / "results.json").read_text())["routers"]["complexity"]
    # Mostly "complex" (LABEL_1) -> the largest expert, the seed mapping; its cost weight still moves it.
    assert complexity["default"]["shares"]["llama-2-70b-chat"] > 0.5
    assert len(complexity["curve"]) == len(bench.cost_weights())
    with pytest.raises(ValueError, match="nope"):  # the strategy's config schema rejects unknown fields
        bench.build_router("complexity", None, ["--nope", "1"])
    for reference in ("oracle", "task"):
        with pytest.raises(ValueError, match=f"{reference} reference takes no options"):
            bench.build_router(reference, None, ["--k", "1"])


def test_bench_named_strategy_without_trainer_is_an_error(routerbench_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(trainers.TRAINERS, "ghost", "training.no_such_trainer_module")
    argv = ["bench", "--train", str(routerbench_dir), "--out", str(tmp_path), "--strategies", "ghost"]
    assert main(argv) == 2
    assert "does not exist yet" in capsys.readouterr().err


def test_bench_skips_unwritten_trainers_it_was_not_asked_for(routerbench_dir, tmp_path, monkeypatch):
    # Runs the real encoder (cached under ~/.cache/routerllm after the first run).
    monkeypatch.setitem(trainers.TRAINERS, "ghost", "training.no_such_trainer_module")
    monkeypatch.setattr(bench, "DEFAULT_STRATEGIES", ("dummy", "ghost"))
    config = bench.BenchConfig(train=str(routerbench_dir), out=str(tmp_path), limit=60)
    assert set(bench.run_bench(config)["routers"]) == {"dummy", "knn", "task", "oracle"}


def test_bench_rejects_unknown_strategies_and_options(routerbench_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="Available strategies"):
        bench.run_bench(bench.BenchConfig(train=str(routerbench_dir), out=str(tmp_path), strategies=["nope"]))
    assert main(["bench", "--train", str(routerbench_dir), "--out", str(tmp_path), "--set", "k=3"]) == 2
    assert "error: Invalid --set 'k=3': expected NAME.OPTION=VALUE" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--set names strategies \['nope'\] that are not benchmarked"):
        bench.run_bench(
            bench.BenchConfig(train=str(routerbench_dir), out=str(tmp_path), options={"nope": ["--k", "1"]})
        )


def test_train_knn_round_trip(routerbench_dir, tmp_path, fake_embeddings):
    data = routerbench_dir / "mbpp_train.csv"
    out = tmp_path / "knn"
    argv = ["train", "knn", "--data", str(data), "--experts", "mix4", "--out", str(out), "--k", "7", "--holdout", "0.3"]
    assert main(argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["architecture"] == {"k": 7, "metric": "cosine"}
    assert meta["metrics"]["options"] == {"k": 7}
    assert meta["metrics"]["held_out"]["n"] == 90 and 0 < meta["metrics"]["held_out"]["quality"] <= 1
    # The checkpoint serves through the registry with the catalog built from the same training rows.
    train, _ = load_routerbench(data, PRESETS["mix4"]).split(0.3, 0)
    knn = build_strategy("knn", catalog_from_table(train, data=data), {"k": 7, "checkpoint": str(out)})
    knn.setup()
    assert knn.embeddings.shape == (len(train), 384)


def test_train_help_lists_the_strategy_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "knn", "--help"])
    assert "--k" in capsys.readouterr().out
    help_text = build_parser().format_help()
    assert "train" in help_text and "bench" in help_text
