"""The outcome store: durable, append-only, and strict about feedback (named errors the HTTP layer maps)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from training.online.outcome_store import (
    DuplicateFeedbackError,
    InvalidScoreError,
    OutcomeRecord,
    OutcomeStore,
    UnknownRequestError,
)


def fields(request_id: str, expert: str = "a", **extra) -> dict:
    return {
        "request_id": request_id,
        "strategy": "rl",
        "expert": expert,
        "embedding": np.arange(4, dtype=np.float32),
        **extra,
    }


def outcome(request_id: str, expert: str = "a", **extra) -> OutcomeRecord:
    """A validated record, the only thing the store takes."""
    return OutcomeRecord(**fields(request_id, expert, **extra))


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_outcome_and_feedback_join_in_feedback_order(tmp_path):
    store = OutcomeStore(tmp_path / "s.db")
    store.add_outcome(
        outcome(
            "r1",
            "b",
            probs=[0.1, 0.9],
            weights={"quality": 1, "cost": 0.5},
            carbon_budget_left=0.3,
            latency_s=1.5,
            tokens_in=10,
            tokens_out=20,
            cost_usd=0.002,
            carbon_g=0.01,
            policy_version=7,
        )
    )
    store.add_outcome(outcome("r2"))
    c2 = store.add_feedback("r2", 1.0)
    c1 = store.add_feedback("r1", 0.25)
    assert c1 > c2 > 0
    logged = store.experiences_after(0)
    assert [e.outcome.request_id for e in logged] == ["r2", "r1"]
    o = logged[1].outcome
    assert logged[1].score == 0.25 and logged[1].cursor == c1
    assert o.expert == "b" and o.probs == [0.1, 0.9] and o.policy_version == 7
    assert o.weights.cost == 0.5 and o.carbon_budget_left == 0.3 and o.tokens_out == 20 and o.cost_usd == 0.002
    assert o.embedding.dtype == np.float32 and o.embedding.tolist() == [0, 1, 2, 3]
    assert o.group_id == "r1" and o.fanout_rank == 0
    assert [e.outcome.request_id for e in store.experiences_after(c2)] == ["r1"]
    assert store.experiences_after(c1) == []
    assert store.last_cursor() == c1


def test_durability_settings(tmp_path):
    store = OutcomeStore(tmp_path / "s.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_unknown_request_is_404(tmp_path):
    store = OutcomeStore(tmp_path / "s.db")
    with pytest.raises(UnknownRequestError, match="no routed request") as err:
        store.add_feedback("nope", 1.0)
    assert err.value.status == 404


def test_expired_request_is_404(tmp_path):
    clock = Clock()
    store = OutcomeStore(tmp_path / "s.db", ttl_s=60, clock=clock)
    store.add_outcome(outcome("old"))
    store.add_outcome(outcome("fresh", time=clock.t + 50))
    clock.t += 61
    with pytest.raises(UnknownRequestError, match="expired"):
        store.add_feedback("old", 1.0)
    store.add_feedback("fresh", 1.0)


def test_duplicate_feedback_is_409_and_first_stands(tmp_path):
    store = OutcomeStore(tmp_path / "s.db")
    store.add_outcome(outcome("r"))
    store.add_feedback("r", 0.2)
    with pytest.raises(DuplicateFeedbackError, match="first score stands") as err:
        store.add_feedback("r", 0.9)
    assert err.value.status == 409
    assert [e.score for e in store.experiences_after(0)] == [0.2]


@pytest.mark.parametrize("score", [-0.01, 1.01, math.nan, math.inf, "high", None])
def test_invalid_score_is_422(tmp_path, score):
    store = OutcomeStore(tmp_path / "s.db")
    store.add_outcome(outcome("r"))
    with pytest.raises(InvalidScoreError) as err:
        store.add_feedback("r", score)
    assert err.value.status == 422
    assert store.counts()["feedback"] == 0


def test_outcome_retry_is_idempotent_and_fanout_keeps_every_expert(tmp_path):
    store = OutcomeStore(tmp_path / "s.db")
    fanout = [outcome("q", "a", group_id="q"), outcome("q:b", "b", group_id="q", fanout_rank=1)]
    assert store.add_outcomes(fanout) == 2
    assert store.add_outcomes(fanout) == 0  # a retried call records nothing twice
    store.add_feedback("q", 1.0)
    store.add_feedback("q:b", 0.0)
    logged = store.experiences_after(0)
    assert [(e.outcome.expert, e.outcome.group_id, e.outcome.fanout_rank) for e in logged] == [
        ("a", "q", 0),
        ("b", "q", 1),
    ]
    traffic = store.traffic()
    assert traffic["requests"] == 1 and traffic["calls"] == 2
    assert traffic["experts"]["a"]["share"] == 0.5


def test_outcome_validation():
    with pytest.raises(ValueError, match="embedding"):
        OutcomeRecord.model_validate(fields("r", embedding=[1.0, float("nan")]))
    with pytest.raises(ValueError):
        OutcomeRecord.model_validate(fields("r", colour="blue"))
    with pytest.raises(ValueError):
        OutcomeRecord.model_validate(fields("r", carbon_budget_left=2.0))


@pytest.mark.parametrize("bad", [fields("r"), None, "r"])
def test_store_takes_outcome_records_only(tmp_path, bad):
    """A dict (or anything else) is refused with a TypeError that names the type to build, and nothing is
    written, not even the valid record before it in the same call."""
    store = OutcomeStore(tmp_path / "s.db")
    with pytest.raises(TypeError, match="OutcomeRecord, got"):
        store.add_outcomes([outcome("ok"), bad])
    with pytest.raises(TypeError, match="OutcomeRecord"):
        store.add_outcome(bad)
    assert store.counts() == {"outcomes": 0, "feedback": 0}


def test_experiences_before_returns_the_newest_up_to_a_cursor(tmp_path):
    store = OutcomeStore(tmp_path / "s.db")
    cursors = []
    for i in range(10):
        store.add_outcome(outcome(f"r{i}"))
        cursors.append(store.add_feedback(f"r{i}", 1.0))
    got = store.experiences_before(cursors[6], 3)
    assert [e.outcome.request_id for e in got] == ["r4", "r5", "r6"]
    assert len(store.experiences_before(cursors[6], 100)) == 7


WRITER = textwrap.dedent(
    """
    import sys
    from training.online.outcome_store import OutcomeRecord, OutcomeStore
    store = OutcomeStore(sys.argv[1])
    i = 0
    while True:
        store.add_outcome(OutcomeRecord(request_id=f"r{i}", strategy="rl", expert="a", embedding=[0.0, 1.0]))
        store.add_feedback(f"r{i}", 1.0)
        print(f"r{i}", flush=True)  # acknowledged: both writes returned
        i += 1
    """
)


def test_acknowledged_writes_survive_a_kill(tmp_path):
    """A writer process is SIGKILLed mid-stream; everything it was told succeeded is in the store."""
    path = tmp_path / "s.db"
    repo = Path(__file__).resolve().parents[4]  # the repository root, where `training` imports from
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, cwd=repo, env={**os.environ}
    )
    acknowledged = []
    deadline = time.monotonic() + 30
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        acknowledged.append(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(acknowledged) == 40
    stored = {e.outcome.request_id for e in OutcomeStore(path).experiences_after(0)}
    assert set(acknowledged) <= stored
