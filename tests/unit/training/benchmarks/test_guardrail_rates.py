"""The replay measurement of the publish guardrail's false refusals and false accepts (guardrail_rates.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.benchmarks.guardrail_rates import main, measure, policy_pool


def test_policy_pool_holds_fixed_experts_and_switched_variants():
    pool = policy_pool(np.zeros((100, 3)), np.random.default_rng(0), shares=(0.5,))
    assert len(pool) == 3 + 3 * 2
    assert all(p.shape == (100,) for p in pool)
    assert set(np.unique(pool[3])) == {0, 1}  # expert 0 switched to expert 1 on about half the prompts


def test_a_large_gap_with_much_exploration_is_caught_and_rates_are_in_range():
    rng = np.random.default_rng(0)
    rewards = np.stack([rng.random(3000) < p for p in (0.9, 0.1)], 1).astype(float)  # expert 0 far better
    rule = {"confidence": 0.9, "margin": 0.0, "worse_by": 0.02, "min_matches": 5}
    r = measure(rewards, ["t"] * 3000, trials=60, holdback=600, epsilon=0.5, seed=0, **rule)
    assert r["better_candidates"] > 0 and r["worse_candidates"] > 0
    for name in ("point", "bound", "dr"):
        assert 0.0 <= r[name]["false_refusal_rate"] <= 1.0 and 0.0 <= r[name]["false_accept_rate"] <= 1.0
    assert r["bound"]["false_accept_rate"] < 0.5 and r["bound"]["false_refusal_rate"] < 0.2


def test_with_little_exploration_the_dr_bound_catches_bad_candidates_the_ips_bound_lets_through():
    rng = np.random.default_rng(1)
    tasks = np.repeat(["a", "b"], 1500)
    p = np.where(tasks[:, None] == "a", [0.8, 0.3, 0.4], [0.3, 0.6, 0.4])  # the best expert depends on the task
    rewards = (rng.random((3000, 3)) < p).astype(float)
    rule = {"confidence": 0.9, "margin": 0.0, "worse_by": 0.02, "min_matches": 5}
    r = measure(rewards, tasks, trials=150, holdback=400, epsilon=0.05, seed=0, **rule)
    assert r["worse_candidates"] > 10
    assert r["dr"]["false_accept_rate"] < r["bound"]["false_accept_rate"] - 0.15
    assert r["dr"]["false_refusal_rate"] < 0.2


def test_main_writes_results_and_plot(routerbench_dir, tmp_path):
    argv = ["--data", str(routerbench_dir), "--trials", "20", "--epsilons", "0.2", "--holdbacks", "100"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert len(results) == 1 and "false_accept_rate" in results[0]["bound"]
    assert "false_refusal_rate" in results[0]["dr"]
    assert (tmp_path / "rates.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])  # --data is required
