"""`routerllm bench-budget` end to end on a small slice of the shared RouterBench data, and its window replay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from router_deployments.strategies import build_strategy
from training.benchmarks.budget_replay import cut_windows, replay_windows, run_metrics
from training.cli import main
from training.data.routerbench import OutcomeTable, catalog_from_table

RUN_KEYS = {
    "budget_frac",
    "policy",
    "quality",
    "carbon_g",
    "carbon_frac",
    "windows_over_budget_frac",
    "max_overrun_frac",
    "cost_usd",
}


@pytest.mark.data
def test_bench_budget_writes_results_and_plot(routerbench_dir, tmp_path, capsys, fake_embeddings):
    out = tmp_path / "budget"
    argv = ["bench-budget", "--train", str(routerbench_dir), "--experts", "seed4", "--out", str(out)]
    argv += ["--carbon-budget-frac", "0.4,0.2", "--limit", "150", "--window", "10", "--no-progress"]
    argv += ["--set", "rl.total_steps=400", "--set", "rl.hidden=16", "--set", "moe.epochs=3", "--set", "moe.hidden=8"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert (out / "budget_quality_carbon.png").stat().st_size > 10_000
    largest = results["always_largest"]
    assert {"quality", "carbon_g", "cost_usd"} <= set(largest) and largest["expert"] == "llama-2-70b-chat"
    runs = results["runs"]
    assert [(r["budget_frac"], r["policy"]) for r in runs] == [
        (f, p) for f in (0.4, 0.2) for p in ("rl", "rl_bn", "moe", "greedy_threshold", "primal_dual")
    ]
    for r in runs:
        assert RUN_KEYS <= set(r)
        # The guard keeps every window within its budget, so no policy spends more than the budget's share.
        assert r["windows_over_budget_frac"] == 0.0 and r["max_overrun_frac"] == 0.0
        assert r["carbon_frac"] <= r["budget_frac"] + 1e-9
        assert r["carbon_g"] == pytest.approx(r["carbon_frac"] * largest["carbon_g"])
        assert 0.0 <= r["quality"] <= 1.0 and r["cost_usd"] > 0
    assert results["n_train"] + results["n_eval"] == 150
    table = capsys.readouterr().out
    assert "primal_dual" in table and "always-largest" in table


@pytest.mark.data
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--carbon-budget-frac", "0.4,abc", "comma list of numbers"),
        ("--carbon-budget-frac", "0,0.2", "budget fractions must be in"),
        ("--policies", "rl,oracle", "Invalid policies"),
        ("--window", "0", "--window"),
        ("--set", "knn.k=3", "rl.OPTION or moe.OPTION"),
    ],
)
def test_bench_budget_refuses_bad_options(routerbench_dir, tmp_path, capsys, flag, value, message):
    argv = ["bench-budget", "--train", str(routerbench_dir), "--out", str(tmp_path / "x"), flag, value]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def tiny_table() -> OutcomeTable:
    return OutcomeTable(
        sample_ids=["a", "b"],
        prompts=["a", "b"],
        tasks=["t", "t"],
        models=["org/big-70b", "org/small-7b"],
        scores=np.ones((2, 2), np.float32),
        costs=np.full((2, 2), 1e-4, np.float32),
    )


def test_the_guard_keeps_windows_that_an_unguarded_greedy_policy_overruns():
    """dummy scores at random; with the guard no window goes over, without it most do at a 20% budget."""
    catalog = catalog_from_table(tiny_table())
    carbon = np.array([10.0, 1.0])
    windows = cut_windows(np.arange(200), 30)
    assert [len(w) for w in windows] == [30] * 6 + [20]
    texts, emb = ["a"] * 200, np.ones((200, 4), np.float32)
    scores, costs = np.ones((200, 2)), np.ones((200, 2))
    for guard, over in ((True, 0.0), (False, 1.0)):
        replay = replay_windows(build_strategy("dummy", catalog), windows, texts, emb, carbon, 0.2, guard=guard)
        metrics = run_metrics(replay, np.arange(200), scores, costs, carbon, largest=0)
        assert metrics["windows_over_budget_frac"] == over and metrics["n_windows"] == 7
        if guard:
            assert metrics["guard_overrides_frac"] > 0 and metrics["carbon_frac"] <= 0.2 + 1e-9
        else:
            assert metrics["max_overrun_frac"] > 0.5
    with pytest.raises(ValueError, match="at least one request"):
        cut_windows(np.arange(3), 0)
