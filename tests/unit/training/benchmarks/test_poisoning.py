"""The poisoning benchmark (training/benchmarks/poisoning.py) on a small slice of the shared RouterBench data: the
cap holds what the learner reads of the poisoning key, and the figures are written."""

from __future__ import annotations

import json

import pytest

from training.benchmarks.poisoning import PoisoningConfig, main, run_poisoning

pytestmark = pytest.mark.data


def test_the_cap_bounds_what_the_learner_reads_of_the_poisoner(routerbench_dir, tmp_path, fake_embeddings):
    config = PoisoningConfig(data=str(routerbench_dir), out=str(tmp_path), limit=120, passes=1, caps=(5,))
    results = run_poisoning(config)
    assert results["runs"] == ["honest", "honest_other_seed", "poisoned_uncapped", "poisoned_cap_5"]
    sent = results["poisoned_uncapped"]["poisoned"]
    assert sent > 20 and results["poisoned_uncapped"]["poison_learned"] == sent
    capped = results["poisoned_cap_5"]
    assert capped["poisoned"] == sent and capped["poison_learned"] == 5 and capped["over_cap"] == sent - 5
    assert results["honest"]["poisoned"] == 0 and results["honest"]["total_variation"] == 0
    for label in results["runs"]:
        assert sum(results[label]["shares"]) == pytest.approx(1.0)
        assert 0 <= results[label]["total_variation"] <= 1
    assert json.loads((tmp_path / "results.json").read_text())["priciest"] == results["priciest"]


def test_the_command_line(routerbench_dir, tmp_path, fake_embeddings, capsys):
    main(["--data", str(routerbench_dir), "--limit", "60", "--passes", "1", "--caps", "3", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "priciest expert: llama-2-70b-chat" in out and "poisoned_cap_3" in out and "learned 3" in out
