"""`routerllm bench-online` end to end on a small slice of the shared RouterBench data."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from training.benchmarks.online import OnlineBenchConfig, prepare_stream
from training.benchmarks.stream import StreamRouter, replay_stream
from training.cli import main

pytestmark = pytest.mark.data
HAS_VW = importlib.util.find_spec("vowpalwabbit") is not None


def test_bench_online_smoke(routerbench_dir, tmp_path, capsys, fake_embeddings):
    out = tmp_path / "online"
    argv = ["bench-online", "--data", str(routerbench_dir), "--out", str(out), "--experts", "seed4"]
    argv += ["--limit", "80", "--passes", "2", "--lam", "0.5", "--window", "20", "--starts", "cold,warm"]
    argv += ["--trainer", "rl.total_steps=160", "--trainer", "rl.learning_starts=64", "--trainer", "rl.val_fraction=0"]
    argv += ["--trainer", "moe.epochs=2", "--trainer", "moe.val_fraction=0", "--learner", "publish_every_updates=4"]
    argv += [] if HAS_VW else ["--no-vw"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert (out / "learning_curve.png").stat().st_size > 10_000
    expected = {"rl-cold", "rl-warm", "moe-cold", "moe-warm"} | ({"vw-squarecb"} if HAS_VW else set())
    assert set(results["routers"]) == expected
    n = results["n_train"]
    assert results["n_stream"] == 2 * n and n + results["n_set_aside"] + results["n_held_out"] == 80
    assert results["n_set_aside"] == round(0.1 * (80 - results["n_held_out"]))  # rates the catalog, never streamed
    refs = results["references"]
    assert refs["random"]["average_reward"] <= refs["best_fixed"]["average_reward"] <= refs["oracle"]["average_reward"]
    per_task = refs["best_fixed_per_task"]  # in hindsight, per task: never below one expert for all, never the oracle
    assert refs["best_fixed"]["average_reward"] <= per_task["average_reward"] <= refs["oracle"]["average_reward"]
    assert set(per_task["experts"]) <= {"arc-challenge", "mbpp", "winogrande"}
    assert set(per_task["experts"].values()) <= set(results["experts"])
    for name, r in results["routers"].items():
        assert len(r["windows"]) == -(-2 * n // 20) and len(r["per_pass"]) == 2
        assert r["average_reward"] <= refs["oracle"]["average_reward"] + 1e-9
        assert 0 <= r["held_out"]["quality"] <= 1
        if name != "vw-squarecb":
            assert r["publishes"] > 1 and r["live_version"] > 1
            assert set(results["targets"][name]) == {"beats_best_fixed", "beats_vw"}
    printed = capsys.readouterr().out
    assert "rl-cold" in printed
    assert f"rated on {results['n_set_aside']} set-aside prompts, never streamed" in printed


class FixedRouter:
    """A StreamRouter that always calls one expert: the shape the --through-serve hook fills in."""

    def __init__(self, expert: int):
        self.expert, self.seen = expert, 0

    def route(self, event: int, row: int) -> list[int]:
        return [self.expert]

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        self.seen += 1

    def greedy(self, embeddings, texts):
        return np.full(len(embeddings), self.expert)

    def summary(self) -> dict:
        return {}


def test_replaying_a_fixed_expert_scores_its_mean_reward(routerbench_dir, fake_embeddings):
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=60, passes=2)
    stream = prepare_stream(config)
    router: StreamRouter = FixedRouter(3)
    rewards = replay_stream(router, stream, progress=False)
    expected = stream.rewards(stream.train)[stream.rows, 3]
    np.testing.assert_allclose(rewards, expected)
    assert router.seen == len(stream.rows) == 2 * len(stream.train)
    assert sorted(stream.rows[: len(stream.train)]) == list(range(len(stream.train)))  # each pass is a permutation
