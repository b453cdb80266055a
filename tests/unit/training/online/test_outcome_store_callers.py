"""The outcome store's callers: only the key that made a request may score it, what one key can teach the learner
is capped, and a store written before callers existed still opens (training/online/outcome_store.py)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from training.online.outcome_store import DuplicateFeedbackError, OutcomeRecord, OutcomeStore, UnknownRequestError

# The tables as they were before the caller columns (a store on disk from an older version).
OLD_SCHEMA = """
CREATE TABLE outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE, group_id TEXT NOT NULL,
    fanout_rank INTEGER NOT NULL, time REAL NOT NULL, strategy TEXT NOT NULL, expert TEXT NOT NULL,
    policy_version INTEGER, embedding BLOB NOT NULL, probs TEXT, carbon_budget_left REAL NOT NULL,
    weights TEXT NOT NULL, latency_s REAL NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL, carbon_g REAL NOT NULL
);
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE REFERENCES outcomes (request_id),
    score REAL NOT NULL, time REAL NOT NULL
);
"""


def outcome(request_id: str, caller: str | None) -> OutcomeRecord:
    return OutcomeRecord(
        request_id=request_id, strategy="rl", expert="a", embedding=np.ones(4, np.float32), caller=caller
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_only_the_caller_that_made_a_request_may_score_it_and_others_see_an_unknown_id(tmp_path):
    store = OutcomeStore(tmp_path / "s.db")
    store.add_outcomes([outcome("mine", "key_alice"), outcome("open", None)])
    with pytest.raises(UnknownRequestError) as other:
        store.add_feedback("mine", 1.0, caller="key_mallory")
    with pytest.raises(UnknownRequestError) as unknown:
        store.add_feedback("nobody", 1.0, caller="key_mallory")
    assert str(other.value) == "no routed request has id 'mine'"
    assert str(unknown.value) == "no routed request has id 'nobody'"  # the same words: existence is not revealed
    with pytest.raises(UnknownRequestError):
        store.add_feedback("mine", 1.0)  # no key is not the owner either
    with pytest.raises(UnknownRequestError):
        store.add_feedback("open", 1.0, caller="key_alice")  # an open graph's request has no owner to match
    store.add_feedback("mine", 0.5, caller="key_alice")
    with pytest.raises(DuplicateFeedbackError):
        store.add_feedback("mine", 0.9, caller="key_alice")  # once
    store.add_feedback("open", 0.5)
    [a, b] = store.experiences_after(0)
    assert (a.outcome.caller, b.outcome.caller) == ("key_alice", None)


def test_a_store_without_the_caller_columns_is_migrated_on_open(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    row = ("r1", "r1", 0, 1.0, "rl", "a", 1, np.ones(4, "<f4").tobytes(), None, 1.0, "{}", 0, 1, 1, 0.0, 0.0)
    db.execute(f"INSERT INTO outcomes VALUES (NULL, {', '.join('?' * 16)})", row)
    db.execute("INSERT INTO feedback VALUES (NULL, 'r1', 0.7, 2.0)")
    db.commit()
    db.close()
    store = OutcomeStore(path)
    [old] = store.experiences_after(0)  # old feedback is learned; its outcome has no caller
    assert old.score == 0.7 and old.outcome.caller is None and store.last_cursor() == 1
    store.add_outcome(outcome("r2", "key_alice"))
    store.add_feedback("r2", 0.1, caller="key_alice")
    assert [e.outcome.caller for e in store.experiences_after(0)] == [None, "key_alice"]
    store.close()
    OutcomeStore(path).close()  # opening a migrated store again changes nothing


def test_one_callers_feedback_beyond_its_cap_is_stored_but_not_learned(tmp_path):
    clock = Clock()
    store = OutcomeStore(tmp_path / "s.db", clock=clock, caller_cap=(3, 60.0))
    ids = [f"p{i}" for i in range(5)] + ["h0", "o0"]
    callers = ["key_poison"] * 5 + ["key_honest", None]
    store.add_outcomes([outcome(i, c) for i, c in zip(ids, callers)])
    for i, c in zip(ids, callers):
        store.add_feedback(i, 1.0, caller=c)
        clock.t += 1
    learned = [e.outcome.request_id for e in store.experiences_after(0)]
    assert learned == ["p0", "p1", "p2", "h0", "o0"] and store.over_cap() == 2
    assert store.counts()["feedback"] == 7
    with pytest.raises(DuplicateFeedbackError):
        store.add_feedback("p4", 0.0, caller="key_poison")  # stored: it was acknowledged
    clock.t += 60  # the window has moved on: the key is learned from again
    store.add_outcome(outcome("p5", "key_poison"))
    cursor = store.add_feedback("p5", 1.0, caller="key_poison")
    assert store.last_cursor() == cursor and store.experiences_after(0)[-1].outcome.request_id == "p5"
    # A restart keeps the decisions: they are on disk.
    assert len(OutcomeStore(tmp_path / "s.db", caller_cap=(3, 60.0)).experiences_after(0)) == 6
