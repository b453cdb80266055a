"""The shift scenario: phase 1 never shows the new task, phase 2 is heavy in it, and the figures add up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.benchmarks.shift import ShiftPlan, catch_up, old_task_rows, phase_figures, shifted_rows
from training.cli import main

TASKS = ["arc"] * 30 + ["wino"] * 20 + ["mbpp"] * 10


def test_phase_one_is_every_old_task_prompt_once_and_phase_two_is_heavy_in_the_new_task():
    plan = ShiftPlan(new_task="mbpp", length=200, share=0.8)
    rows, shift_at = shifted_rows(TASKS, plan, seed=0)
    tasks = np.asarray(TASKS)
    assert shift_at == 50 and len(rows) == 250
    assert sorted(rows[:shift_at]) == list(range(50))  # arc and wino, each once
    phase_two = tasks[rows[shift_at:]]
    assert 0.7 < np.mean(phase_two == "mbpp") < 0.9
    assert set(phase_two) == {"arc", "wino", "mbpp"}
    new_draws = rows[shift_at:][phase_two == "mbpp"]
    assert sorted(new_draws[:10]) == list(range(50, 60))  # without replacement until the task is used up
    again, _ = shifted_rows(TASKS, plan, seed=0)
    assert np.array_equal(rows, again)
    assert list(old_task_rows(TASKS, plan)) == list(range(50))


def test_a_task_missing_from_the_data_is_a_clear_error():
    with pytest.raises(ValueError, match="needs prompts of task 'gsm8k'"):
        shifted_rows(TASKS, ShiftPlan(new_task="gsm8k"), seed=0)
    with pytest.raises(ValueError, match="invalid shift plan"):
        ShiftPlan(share=0.0)


def test_catch_up_counts_requests_until_a_full_trailing_window_reaches_the_target():
    rewards = np.array([0.0] * 10 + [1.0] * 20)
    assert catch_up(rewards, target=0.9, window=5) == 15  # the window 10..14 is the first one all ones
    assert catch_up(rewards, target=0.5, window=4) == 12  # two of the last four are ones at request 12
    assert catch_up(np.ones(3), target=0.5, window=5) is None  # never a full window
    assert catch_up(np.zeros(30), target=0.1, window=5) is None


def test_phase_figures_regret_against_each_phases_best_fixed_expert():
    # Expert 0 is best before the shift, expert 1 after; the router keeps expert 0 for 4 requests, then switches.
    expert_rewards = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 8)
    router = np.concatenate([np.ones(6), np.zeros(4), np.ones(4)])
    figures = phase_figures({"r": router}, expert_rewards, 6, ShiftPlan(window=2, tolerance=0.02), ["a", "b"])
    one, two = figures["phases"]
    assert one["best_fixed"] == {"expert": "a", "average_reward": 1.0}
    assert two["best_fixed"] == {"expert": "b", "average_reward": 1.0} and (two["start"], two["end"]) == (6, 14)
    phase_one, phase_two = figures["routers"]["r"]["phases"]
    assert phase_one == {"average_reward": 1.0, "regret": 0.0, "regret_per_request": 0.0}
    assert phase_two["regret"] == 4.0 and phase_two["regret_per_request"] == 0.5
    assert figures["routers"]["r"]["requests_to_catch_up"] == 6
    assert figures["routers"]["r"]["after_shift_windows"] == [0.0, 0.0, 1.0, 1.0]  # pairs of requests after the shift
    json.dumps(figures)  # results.json must take it


@pytest.mark.data
def test_bench_online_shift_end_to_end(routerbench_dir, tmp_path, fake_embeddings):
    out = tmp_path / "shift"
    argv = ["bench-online", "--data", str(routerbench_dir), "--out", str(out), "--experts", "seed4", "--no-vw"]
    argv += ["--limit", "120", "--shift", "--shift-length", "60", "--window", "20", "--strategies", "moe"]
    argv += ["--trainer", "moe.epochs=2", "--trainer", "moe.val_fraction=0", "--learner", "publish_every_updates=4"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    shift = results["shift"]
    assert set(shift["routers"]) == {"moe-cold", "moe-warm"}
    assert shift["plan"]["shift_at"] + 60 == results["n_stream"]
    for name, r in results["routers"].items():
        assert len(r["per_pass"]) == 1 and r["per_pass"][0] == pytest.approx(r["average_reward"])
        assert len(shift["routers"][name]["phases"]) == 2
    assert (out / "learning_curve.png").stat().st_size > 10_000


def test_shift_takes_no_passes(tmp_path):
    argv = ["bench-online", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--shift", "--passes", "3"]
    assert main(argv) == 2
