"""`routerllm report`: the rolling spend behind the burn-down chart, and clear errors for a bad URL or window."""

import pytest

from training.cli import main
from training.report import carbon_limit, rolling_spend, write_report


def test_rolling_spend_sums_the_window_ending_at_each_time():
    assert rolling_spend([0, 1, 2, 10], [1.0, 2.0, 3.0, 4.0], window_s=5) == [1.0, 3.0, 6.0, 4.0]
    assert rolling_spend([], [], 5) == []


def test_the_carbon_limit_is_the_total_line():
    lines = [
        {"scope": "caller", "dimension": "carbon_g", "limit": 1},
        {"scope": "total", "dimension": "carbon_g", "limit": 9},
    ]
    assert carbon_limit({"budget": {"lines": lines}}) == 9 and carbon_limit({"budget": None}) is None


def test_an_unreachable_graph_or_a_bad_window_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--url", "http://127.0.0.1:9", "--out", str(tmp_path)]) == 2
    assert "cannot reach http://127.0.0.1:9/v1/carbon/report" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--window-s must be a positive"):
        write_report("http://127.0.0.1:9", tmp_path, window_s=0)
