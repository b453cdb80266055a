"""shift_summary: many --shift runs' results.json summed up per (experts, lam), paired against VW run by run."""

from __future__ import annotations

import json

import pytest

from training.benchmarks.shift_summary import load_runs, main, summarise


def write_run(root, name, experts, lam, seed, sampling_seed, phase2, catch, best=0.5):
    """A results.json as `bench-online --shift` writes it (only the keys the summary reads, plus a cold start)."""
    routers = {
        router: {"phases": [{"average_reward": 0.6}, {"average_reward": r}], "requests_to_catch_up": c}
        for router, r, c in zip(("rl-warm", "vw-squarecb"), phase2, catch)
    }
    results = {
        "config": {"experts": experts, "lam": lam, "seed": seed, "sampling_seed": sampling_seed},
        "shift": {"phases": [{}, {"best_fixed": {"expert": "x", "average_reward": best}}], "routers": routers},
    }
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(results))


def test_phase_two_is_paired_against_vw_run_by_run_and_catch_up_counts_the_target(tmp_path):
    write_run(tmp_path, "a", "seed4", 0.1, 0, None, (0.50, 0.40), (120, 600), best=0.48)
    write_run(tmp_path, "b", "seed4", 0.1, 1, None, (0.44, 0.46), (300, None), best=0.50)
    write_run(tmp_path, "c", "seed4", 0.1, 0, 10, (0.47, 0.41), (None, 200), best=0.46)
    write_run(tmp_path, "d", "mix4", 0.5, 0, None, (0.60, 0.55), (100, 100))
    (tmp_path / "cold").mkdir()
    (tmp_path / "cold" / "results.json").write_text(json.dumps({"config": {}, "routers": {}}))  # not a shift run
    mix4, seed4 = summarise(load_runs([tmp_path]))
    assert (mix4["experts"], mix4["runs"], seed4["experts"], seed4["runs"]) == ("mix4", 1, "seed4", 3)
    rl = seed4["routers"]["rl-warm"]
    assert rl["phase2"]["mean"] == pytest.approx(0.47)
    assert rl["phase2"]["se"] == pytest.approx(0.03 / 3**0.5)  # sd 0.03 over three runs
    # Paired: +0.10, -0.02, +0.06 against VW on the same stream and draw.
    assert rl["vs_reference"]["mean"] == pytest.approx(0.14 / 3) and rl["vs_reference"]["wins"] == 2
    assert (rl["catch_up_max"], rl["caught_up_within"], rl["never_caught_up"]) == (300, 2, 1)
    vw = seed4["routers"]["vw-squarecb"]
    assert "vs_reference" not in vw and (vw["catch_up_max"], vw["caught_up_within"]) == (600, 1)  # 600 > 500
    assert seed4["phase2_best_fixed"] == pytest.approx(0.48)
    assert mix4["routers"]["rl-warm"]["phase2"]["se"] != mix4["routers"]["rl-warm"]["phase2"]["se"]  # one run: nan


def test_the_command_writes_the_summary_and_the_plot_and_refuses_a_run_counted_twice(tmp_path, capsys):
    write_run(tmp_path / "new", "a", "seed4", 0.5, 0, None, (0.31, 0.30), (100, 150))
    write_run(tmp_path / "new", "b", "seed4", 0.5, 0, 11, (0.33, 0.30), (100, 150))
    assert main([str(tmp_path / "new"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| seed4, 0.5 | 2 | 0.500 | rl-warm | 0.320 ± 0.010 | +0.020 ± 0.010 (2/2) | 100 | 2/2 (500) |" in printed
    assert json.loads((tmp_path / "out" / "summary.json").read_text())[0]["runs"] == 2
    assert (tmp_path / "out" / "phase2.png").stat().st_size > 10_000
    # The same stream and draw again (its sampling seed spelled out): counted twice it would shrink the error.
    write_run(tmp_path / "again", "a", "seed4", 0.5, 0, 0, (0.31, 0.30), (100, 150))
    with pytest.raises(SystemExit, match=r"new/a/results.json and .*again/a/results.json are the same run"):
        main([str(tmp_path / "new"), str(tmp_path / "again")])
    with pytest.raises(SystemExit, match="no results.json of a --shift run"):
        main([str(tmp_path / "out")])
