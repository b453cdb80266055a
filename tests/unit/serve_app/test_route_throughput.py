"""The routing-throughput benchmark's parts that need no graph: prompts, process names, the figures of a series."""

import pytest

from serve_app.route_throughput import Series, _part, load_prompts


def test_prompts_are_distinct_shuffled_and_seeded():
    prompts = load_prompts("synthetic", 200, seed=0)
    assert len(prompts) == len(set(prompts)) == 200
    assert load_prompts("synthetic", 200, seed=0) == prompts and load_prompts("synthetic", 200, seed=1) != prompts
    with pytest.raises(ValueError, match="unknown prompt source"):
        load_prompts("lorem", 10, seed=0)


def test_processes_are_named_by_their_part_of_the_graph():
    assert _part(["ray::ServeReplica:routerllm-route-bench:embedding"]) == "embedding"
    assert _part(["ray::ServeReplica:app:expert_slot_7b", "--flag"]) == "expert_slot_7b"
    assert _part(["ray::ProxyActor"]) == "proxy" and _part(["ray::ServeController"]) == "controller"
    assert _part(["/usr/bin/raylet"]) == "ray (raylet, gcs, workers)"


def test_series_figures():
    series = Series(
        latencies_ms=[10.0, 20.0, 30.0, 40.0], seconds=2.0, cpu_s={"router": 0.04}, batches={"router": [2, 4]}
    )
    figures = series.figures()
    assert figures["decisions_per_s"] == 2.0 and figures["latency_ms"]["p50"] == 25.0
    assert figures["cpu_ms_per_decision"] == {"router": 10.0} and figures["mean_batch_size"] == {"router": 2.0}
