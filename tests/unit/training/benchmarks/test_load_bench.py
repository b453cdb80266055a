"""bench-load's parts without a graph: the figures of a window, the sustainable-rate rule, recovery per kill, the
feedback ledger, the graph it would start, finding and killing a process by its title among a root's descendants,
and the command's refusals of bad options."""

import asyncio
import subprocess
import time

import pytest

from serve_app.config import AppConfig
from training.benchmarks.chaos import Kill, descendants_titled, kill_role, replica_title
from training.benchmarks.load import LoadBenchConfig, graph_config, phases, quick, recovery, sustainable
from training.benchmarks.load_traffic import FeedbackLedger, Sample, latency_figures
from training.cli import main


def samples(*rows) -> list[Sample]:
    return [Sample(sent=t, latency_s=ms / 1000, status=status) for t, ms, status in rows]


def test_latency_figures_count_failed_requests_with_their_time():
    figures = latency_figures(samples(*[(i, 10.0, 200) for i in range(99)], (99, 5000.0, 503)))
    assert figures["requests"] == 100 and figures["failed"] == 1 and figures["failed_share"] == 0.01
    assert figures["p50_ms"] == 10.0 and figures["p99_ms"] > 10.0
    assert latency_figures([])["p99_ms"] is None


def test_a_rate_is_sustainable_only_without_failures_under_the_bound_and_keeping_up():
    ok = {"failed": 0, "p99_ms": 900.0, "requests": 100}
    assert sustainable(ok, rate=10, step_s=10, p99_ms=1000)
    assert not sustainable({**ok, "failed": 1}, 10, 10, 1000)
    assert not sustainable({**ok, "p99_ms": 1001.0}, 10, 10, 1000)
    assert not sustainable({**ok, "requests": 90}, 10, 10, 1000)


def test_recovery_is_the_last_hurt_request_after_each_kill_and_phases_split_around_them():
    rows = samples((1, 10, 200), (10, 10, 200), (11, 10, 0), (12, 3000, 200), (14, 10, 200), (20, 10, 503))
    rows += samples((21, 10, 200), (40, 10, 200))
    kills = [Kill("router", "router", 1, at=10.0, replaced_s=3.0), Kill("learner", "l", 2, at=19.0, replaced_s=1.0)]
    recovery(kills, rows, p99_ms=1000, end=40)
    assert (kills[0].recovery_s, kills[0].hurt_requests) == (2.0, 2)  # the 503 at 20 s belongs to the next kill
    assert (kills[1].recovery_s, kills[1].hurt_requests) == (1.0, 1)
    # A request sent before the second kill but answered after it is that kill's.
    late = samples((18.5, 2000, 200))
    recovery(kills, rows + late, p99_ms=1000, end=40)
    assert (kills[0].hurt_requests, kills[1].hurt_requests, kills[1].recovery_s) == (2, 2, 1.0)
    split = phases(rows, kills)
    assert split["before"]["requests"] == 1 and split["after"]["requests"] == 2
    assert split["during"]["failed"] == 2 and split["all"]["requests"] == 8


def test_the_ledger_counts_a_409_on_resend_as_acknowledged():
    ledger = FeedbackLedger(first={"a": 200, "b": 503, "c": 503, "d": 0, "e": 404})
    ledger.resent = {"b": 200, "c": 409, "d": 503}
    assert ledger.acknowledged() == {"a", "b", "c"}
    summary = ledger.summary()
    assert summary["refused_503"] == 2 and summary["other_errors"] == 2 and summary["resent_failed"] == 1


def test_the_graph_it_starts_is_a_valid_config_with_replay_experts(routerbench_dir, tmp_path):
    graph, columns = graph_config(LoadBenchConfig(data=str(routerbench_dir), out=str(tmp_path)), tmp_path)
    config = AppConfig.model_validate(graph)
    assert {e.backend.kind for e in config.experts} == {"replay"} and config.router.num_replicas == 2
    assert set(columns) == set(config.catalog.names) and config.learner.training.store_path.endswith("outcomes.db")
    assert quick(LoadBenchConfig(data="d", out="o")).hold_s == 90.0


def test_a_process_is_found_by_its_title_below_the_root_only_and_killed_by_pid():
    title = replica_title("router", app="resilience-test")
    root = subprocess.Popen(["bash", "-c", f"(exec -a '{title}' sleep 60) & wait"])
    outsider = subprocess.Popen(["bash", "-c", f"exec -a '{title}' sleep 60"])
    try:
        deadline = time.time() + 10
        while not descendants_titled(root.pid, title) and time.time() < deadline:
            time.sleep(0.05)
        (pid,) = descendants_titled(root.pid, title)
        assert pid != outsider.pid
        kill = asyncio.run(
            kill_role("router", root.pid, "http://127.0.0.1:9", time.perf_counter, app="resilience-test")
        )
        assert kill.pid == pid
        root.wait(10)  # its only child died, so `wait` returns
        assert descendants_titled(root.pid, title) == [] and outsider.poll() is None
    finally:
        for p in (root, outsider):
            p.kill()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--hold-s", "0"], "--hold-s must be positive"),
        (["--hold-share", "1.5"], "--hold-share must be in (0, 1]"),
        (["--start-rate", "10", "--max-rate", "5"], "below --start-rate"),
    ],
)
def test_bad_options_are_refused_with_a_message(option, message, capsys):
    assert main(["bench-load", "--data", "d", "--out", "o", *option]) == 2
    assert message in capsys.readouterr().err
