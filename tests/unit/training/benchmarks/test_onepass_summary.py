"""onepass_summary: bench-online runs without the shift summed up per (experts, lam), and paired against a base."""

from __future__ import annotations

import json

import pytest

from training.benchmarks.onepass_summary import load_runs, main, summarise


def write_run(root, name, experts, lam, seed, sampling_seed, rewards, best=(0.5, 0.45)):
    """A results.json as `bench-online` writes it (only the keys the summary reads); rewards: router ->
    (stream, held out)."""
    results = {
        "config": {"experts": experts, "lam": lam, "seed": seed, "sampling_seed": sampling_seed},
        "references": {"best_fixed": {"expert": "x", "average_reward": best[0], "held_out": {"reward": best[1]}}},
        "routers": {
            router: {"average_reward": s, "held_out": {"quality": 0.0, "reward": h}}
            for router, (s, h) in rewards.items()
        },
    }
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(results))


def test_stream_and_held_out_are_summed_up_and_counted_against_the_best_fixed_expert_and_vw(tmp_path):
    write_run(tmp_path, "a", "seed4", 0.1, 0, None, {"rl-cold": (0.52, 0.44), "vw-squarecb": (0.51, 0.40)})
    write_run(tmp_path, "b", "seed4", 0.1, 1, None, {"rl-cold": (0.46, 0.47), "vw-squarecb": (0.48, 0.40)})
    write_run(tmp_path, "c", "seed4", 0.1, 0, 10, {"rl-cold": (0.49, 0.46), "vw-squarecb": (0.47, 0.40)})
    write_run(tmp_path, "d", "mix4", 0.5, 0, None, {"rl-cold": (0.7, 0.7)})
    (tmp_path / "shift").mkdir()
    (tmp_path / "shift" / "results.json").write_text(json.dumps({"config": {}, "routers": {}, "shift": {}}))
    mix4, seed4 = summarise(load_runs([tmp_path]))
    assert (mix4["experts"], mix4["runs"], seed4["experts"], seed4["runs"]) == ("mix4", 1, "seed4", 3)
    rl = seed4["routers"]["rl-cold"]
    assert rl["stream"]["mean"] == pytest.approx(0.49) and rl["stream"]["se"] == pytest.approx(0.03 / 3**0.5)
    assert rl["held_out"]["mean"] == pytest.approx(0.49 - 0.033333333, abs=1e-6)
    # Best fixed 0.5 on the stream (only seed 0 beats it), 0.45 held out (two of three above).
    assert (rl["stream_beats_best_fixed"], rl["held_out_beats_best_fixed"], rl["stream_beats_vw"]) == (1, 2, 2)
    assert "stream_beats_vw" not in seed4["routers"]["vw-squarecb"] and "against_base" not in rl
    assert seed4["best_fixed"] == {"stream": 0.5, "held_out": 0.45}


def test_a_variant_is_paired_with_the_base_run_of_the_same_stream_and_draw(tmp_path):
    for draw, (s, h) in zip((None, 10), ((0.50, 0.45), (0.47, 0.44))):
        write_run(tmp_path / "base", f"d{draw}", "seed4", 0.5, 0, draw, {"rl-cold": (s, h)})
    write_run(tmp_path / "new", "a", "seed4", 0.5, 0, None, {"rl-cold": (0.53, 0.44), "moe-cold": (0.49, 0.46)})
    write_run(tmp_path / "new", "b", "seed4", 0.5, 0, 10, {"rl-cold": (0.48, 0.45), "moe-cold": (0.48, 0.45)})
    (cell,) = summarise(load_runs([tmp_path / "new"]), base=load_runs([tmp_path / "base"]), base_router="rl-cold")
    rl, moe = cell["routers"]["rl-cold"]["against_base"], cell["routers"]["moe-cold"]["against_base"]
    assert rl["stream"]["mean"] == pytest.approx(0.02) and rl["stream"]["wins"] == 2  # +0.03, +0.01
    assert rl["held_out"]["mean"] == pytest.approx(0.0) and rl["held_out"]["wins"] == 1  # -0.01, +0.01
    assert moe["router"] == "rl-cold" and moe["stream"]["wins"] == 1  # -0.01, +0.01
    # Without --base-router a router pairs with its own name, which this base never ran.
    with pytest.raises(ValueError, match="has no base run with router moe-cold"):
        summarise(load_runs([tmp_path / "new"]), base=load_runs([tmp_path / "base"]))


def test_the_command_writes_the_summary_and_the_plot_and_refuses_a_missing_or_doubled_run(tmp_path, capsys):
    write_run(tmp_path / "base", "a", "mix4", 0.1, 2, None, {"rl-cold": (0.70, 0.70)})
    write_run(tmp_path / "new", "a", "mix4", 0.1, 2, None, {"rl-cold": (0.72, 0.69)})
    assert main([str(tmp_path / "new"), "--against", str(tmp_path / "base"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "| mix4, 0.1 | 1 | 0.5000 / 0.4500 | rl-cold | 0.7200 ± nan | 0.6900 ± nan | 1/1 / 1/1 |  " in printed
    assert "| +0.0200 ± nan (1/1) | -0.0100 ± nan (0/1) |" in printed
    assert json.loads((tmp_path / "out" / "summary.json").read_text())[0]["runs"] == 1
    assert (tmp_path / "out" / "onepass.png").stat().st_size > 10_000
    write_run(tmp_path / "new", "b", "mix4", 0.1, 3, None, {"rl-cold": (0.72, 0.69)})
    with pytest.raises(SystemExit, match=r"new/b/results.json has no base run"):
        main([str(tmp_path / "new"), "--against", str(tmp_path / "base")])
    write_run(tmp_path / "again", "a", "mix4", 0.1, 2, 2, {"rl-cold": (0.72, 0.69)})  # the draw spelled out
    with pytest.raises(SystemExit, match=r"new/a/results.json and .*again/a/results.json are the same run"):
        main([str(tmp_path / "new"), str(tmp_path / "again")])
    with pytest.raises(SystemExit, match="no results.json of a bench-online run without --shift"):
        main([str(tmp_path / "out")])
