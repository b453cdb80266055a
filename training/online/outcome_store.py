"""The durable log of what the router did and how it went: outcomes and user feedback.

An outcome is written when an expert answers (one row per expert: a top-k fan-out writes k rows sharing a
`group_id`); feedback is a score in [0, 1] for one outcome, sent later by the client. The learner reads
outcome+feedback pairs in feedback order, after a cursor (the feedback's rowid, which SQLite's AUTOINCREMENT never
reuses), so a restarted learner resumes exactly where its last checkpoint left off.

Durability: SQLite in WAL mode with synchronous=FULL, and every write is committed before the call returns, so
whatever a caller was told succeeded survives a crash of the process (or of the machine, as far as fsync goes).
`OutcomeStore(":memory:")` is the same class without a file, for benchmarks.

Each outcome keeps the caller that made the request (the key's fingerprint, serve_app/auth.py; NULL in an open
graph) and only that caller may score it: feedback from another caller is refused exactly as an unknown id is, so
nobody learns whether someone else's id exists. A store written before the column existed gains it on open.

What one caller can teach the learner is bounded (`caller_cap`, (N, W)): of one caller's feedback, at most N per
W seconds is marked `learned`; the rest is stored and acknowledged like any other but never read by the learner.
The decision is made when the feedback is written, so it is the same after a restart. Callers are told apart by
key: an open graph's feedback (caller NULL) is not capped.

Feedback is validated once, here, with named errors the HTTP layer maps to status codes:
    UnknownRequestError    404  no outcome with that id (for this caller), or it is older than the TTL
    DuplicateFeedbackError 409  the id already has a score (the first one stands)
    InvalidScoreError      422  the score is not a finite number in [0, 1]
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from router_deployments.objectives import ObjectiveWeights

MEMORY = ":memory:"


class FeedbackError(ValueError):
    """Base of the feedback errors; `status` is the HTTP status the ingress answers with."""

    status = 400


class UnknownRequestError(FeedbackError, KeyError):
    """No outcome has this request id, or it is older than the feedback TTL."""

    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateFeedbackError(FeedbackError):
    """This request id already has a score; the first score stands."""

    status = 409


class InvalidScoreError(FeedbackError):
    """The score is not a finite number in [0, 1]."""

    status = 422


class OutcomeRecord(BaseModel):
    """What the ingress records about one expert call (one per expert of a fan-out)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    request_id: str = Field(min_length=1, max_length=256, description="Unique id of this outcome (feedback key).")
    strategy: str = Field(min_length=1, description="Strategy that made the routing decision.")
    expert: str = Field(min_length=1, description="Expert that answered.")
    embedding: np.ndarray = Field(description="Prompt embedding the strategy routed on (stored as float32).")
    policy_version: int | None = Field(None, description="Published policy version that routed the request.")
    probs: list[float] | None = Field(
        None, description="Probability the strategy gave each expert, in catalog order (for off-policy estimates)."
    )
    group_id: str | None = Field(
        None, description="Request id shared by every outcome of one fan-out (default: request_id)."
    )
    fanout_rank: int = Field(0, ge=0, description="0 for the answer returned to the client, 1.. for the others.")
    carbon_budget_left: float = Field(1.0, ge=0, le=1, description="Fraction of the carbon budget left at routing.")
    weights: ObjectiveWeights = Field(default_factory=ObjectiveWeights, description="The request's objectives.")
    latency_s: float = Field(0.0, ge=0, description="Expert latency of this call.")
    tokens_in: int = Field(0, ge=0)
    tokens_out: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)
    carbon_g: float = Field(0.0, ge=0)
    caller: str | None = Field(
        None, max_length=64, description="Fingerprint of the key that made the request (None: an open graph)."
    )
    time: float | None = Field(None, description="Unix time of the call (default: when it is recorded).")

    @field_validator("embedding", mode="before")
    @classmethod
    def _embedding(cls, v: Any) -> np.ndarray:
        arr = np.asarray(v, dtype=np.float32)
        if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
            raise ValueError("embedding must be a non-empty 1-D vector of finite numbers")
        return arr

    @field_validator("probs")
    @classmethod
    def _probs(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(math.isfinite(p) and 0 <= p <= 1 for p in v):
            raise ValueError("probs must be finite numbers in [0, 1]")
        return v


def outcome_id(request_id: str, expert: str, rank: int) -> str:
    """Feedback key of one answered call: the request's id for the answer returned (rank 0), and
    `<request id>:<expert>` for the other experts of a fan-out (what the ingress and the online bench both log)."""
    return request_id if rank == 0 else f"{request_id}:{expert}"


@dataclass
class LoggedExperience:
    """An outcome joined with its feedback, as the learner reads it."""

    cursor: int
    """Rowid of the feedback: monotonic, the learner's resume point."""
    outcome: OutcomeRecord
    score: float
    feedback_time: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    group_id TEXT NOT NULL,
    fanout_rank INTEGER NOT NULL,
    time REAL NOT NULL,
    strategy TEXT NOT NULL,
    expert TEXT NOT NULL,
    policy_version INTEGER,
    embedding BLOB NOT NULL,
    probs TEXT,
    carbon_budget_left REAL NOT NULL,
    weights TEXT NOT NULL,
    latency_s REAL NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    carbon_g REAL NOT NULL,
    caller TEXT
);
CREATE INDEX IF NOT EXISTS outcomes_group ON outcomes (group_id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE REFERENCES outcomes (request_id),
    score REAL NOT NULL,
    time REAL NOT NULL,
    caller TEXT,
    learned INTEGER NOT NULL DEFAULT 1
);
"""
_OUTCOME_COLUMNS = (
    "request_id, group_id, fanout_rank, time, strategy, expert, policy_version, embedding, probs, "
    "carbon_budget_left, weights, latency_s, tokens_in, tokens_out, cost_usd, carbon_g, caller"
)


class OutcomeStore:
    """Append-only SQLite log of outcomes and feedback; safe to share between threads of one process."""

    def __init__(
        self,
        path: str | Path,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.time,
        caller_cap: tuple[int, float] | None = None,
    ):
        """`ttl_s`: feedback for an outcome older than this is refused as unknown (None: no limit). `caller_cap`:
        (N, W), the learner reads at most N feedbacks of one caller per W seconds (None: all)."""
        self.path = str(path)
        self.ttl_s = ttl_s
        self.caller_cap = caller_cap
        self.clock = clock
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is left in an implicit transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            if self.path != MEMORY:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- writing --------------------------------------------------------------------------------------
    def add_outcomes(self, outcomes: Iterable[OutcomeRecord]) -> int:
        """Append outcomes in one committed transaction; returns how many were new. A request id already
        stored is skipped, so a retried call (e.g. after an actor restart) records nothing twice.

        Records are validated where they are made (OutcomeRecord's own validators), not again here; anything
        else is a TypeError, so a caller that still builds dicts fails loudly instead of being coerced."""
        records = list(outcomes)
        for o in records:
            if not isinstance(o, OutcomeRecord):
                raise TypeError(
                    f"outcomes must be training.online.outcome_store.OutcomeRecord, got {type(o).__name__}; "
                    "build OutcomeRecord(...) where the outcome is made"
                )
        rows = [self._outcome_row(o) for o in records]
        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                f"INSERT OR IGNORE INTO outcomes ({_OUTCOME_COLUMNS}) VALUES ({', '.join('?' * 17)})", rows
            )
            return self._db.total_changes - before

    def add_outcome(self, outcome: OutcomeRecord) -> bool:
        """Append one outcome; False if its request id was already stored."""
        return self.add_outcomes([outcome]) == 1

    def add_feedback(self, request_id: str, score: float, at: float | None = None, caller: str | None = None) -> int:
        """Record `caller`'s score of one of its outcomes; returns the feedback's cursor (rowid).

        Raises InvalidScoreError, UnknownRequestError (unknown or expired id, or another caller's: the same
        message as unknown) or DuplicateFeedbackError."""
        try:
            value = float(score)
        except (TypeError, ValueError) as e:
            raise InvalidScoreError(f"score must be a number in [0, 1], got {score!r}") from e
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InvalidScoreError(f"score must be a finite number in [0, 1], got {score!r}")
        now = self.clock() if at is None else at
        with self._lock, self._transaction():
            found = self._db.execute("SELECT time, caller FROM outcomes WHERE request_id = ?", (request_id,)).fetchone()
            if found is None or found[1] != caller:
                raise UnknownRequestError(f"no routed request has id {request_id!r}")
            if self.ttl_s is not None and now - found[0] > self.ttl_s:
                raise UnknownRequestError(
                    f"request {request_id!r} is older than the feedback window ({self.ttl_s:g} s) and has expired"
                )
            learned = self._under_cap(caller, now)
            try:
                cursor = self._db.execute(
                    "INSERT INTO feedback (request_id, score, time, caller, learned) VALUES (?, ?, ?, ?, ?)",
                    (request_id, value, now, caller, int(learned)),
                )
            except sqlite3.IntegrityError:
                (first,) = self._db.execute("SELECT score FROM feedback WHERE request_id = ?", (request_id,)).fetchone()
                raise DuplicateFeedbackError(
                    f"request {request_id!r} already has feedback (score {first:g}); the first score stands"
                ) from None
            return int(cursor.lastrowid)

    # --- reading --------------------------------------------------------------------------------------
    def experiences_after(
        self, cursor: int = 0, limit: int | None = None, upto: int | None = None
    ) -> list[LoggedExperience]:
        """Outcome+feedback pairs with cursor < feedback rowid (<= upto), oldest feedback first."""
        columns = ", ".join("o." + c.strip() for c in _OUTCOME_COLUMNS.split(","))
        sql = (
            f"SELECT f.id, f.score, f.time, {columns} FROM feedback f "
            "JOIN outcomes o ON o.request_id = f.request_id WHERE f.id > ? AND f.id <= ? AND f.learned = 1 "
            "ORDER BY f.id"
        )
        params: tuple = (int(cursor), 2**62 if upto is None else int(upto))
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [LoggedExperience(cursor=r[0], score=r[1], feedback_time=r[2], outcome=_outcome(r[3:])) for r in rows]

    def experiences_before(self, cursor: int, limit: int) -> list[LoggedExperience]:
        """The `limit` newest pairs with feedback rowid <= cursor, oldest first (to refill a replay on resume)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM feedback WHERE id <= ? AND learned = 1 ORDER BY id DESC LIMIT 1 OFFSET ?",
                (int(cursor), int(limit)),
            ).fetchone()
        return self.experiences_after(row[0] if row else 0, upto=cursor)

    def last_cursor(self) -> int:
        """The newest learned feedback's rowid (0 when there is none): what the learner has to read up to."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM feedback WHERE learned = 1").fetchone()[0])

    def counts(self) -> dict[str, int]:
        with self._lock:
            outcomes = self._db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
            feedback = self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
        return {"outcomes": int(outcomes), "feedback": int(feedback)}

    def over_cap(self) -> int:
        """Feedback stored but not learned: over its caller's cap."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback WHERE learned = 0").fetchone()[0])

    def traffic(self) -> dict[str, Any]:
        """Calls, share, cost and carbon per expert, and per request (fan-out rank 0 counts the requests)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT expert, COUNT(*), SUM(fanout_rank = 0), SUM(cost_usd), SUM(carbon_g) FROM outcomes "
                "GROUP BY expert ORDER BY expert"
            ).fetchall()
        calls = sum(r[1] for r in rows)
        requests = sum(r[2] for r in rows)
        per_request = max(requests, 1)
        return {
            "requests": int(requests),
            "calls": int(calls),
            "cost_usd_per_request": sum(r[3] for r in rows) / per_request,
            "carbon_g_per_request": sum(r[4] for r in rows) / per_request,
            "experts": {
                expert: {
                    "calls": int(n),
                    "requests": int(first),
                    "share": n / max(calls, 1),
                    "cost_usd_per_call": cost / n,
                    "carbon_g_per_call": co2 / n,
                }
                for expert, n, first, cost, co2 in rows
            },
        }

    def has_outcome(self, request_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM outcomes WHERE request_id = ?", (request_id,)).fetchone() is not None

    # --- carbon report queries (read-only) --------------------------------------------------------------
    def carbon_by(self, key: str, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Per `key` ('expert' or 'strategy') over outcomes with since <= time < until: calls, requests (fan-out
        rank 0), tokens, cost, carbon (all calls, and of the rank-0 answers), feedback count and score sum."""
        if key not in ("expert", "strategy"):
            raise ValueError(f"carbon_by groups by 'expert' or 'strategy', not {key!r}")
        sql = (
            f"SELECT o.{key}, COUNT(*), SUM(o.fanout_rank = 0), SUM(o.tokens_in), SUM(o.tokens_out), "
            "SUM(o.cost_usd), SUM(o.carbon_g), SUM(CASE WHEN o.fanout_rank = 0 THEN o.carbon_g ELSE 0 END), "
            "COUNT(f.score), COALESCE(SUM(f.score), 0), MIN(o.time), MAX(o.time) FROM outcomes o "
            f"LEFT JOIN feedback f ON f.request_id = o.request_id WHERE o.time >= ? AND o.time < ? GROUP BY o.{key} "
            f"ORDER BY o.{key}"
        )
        names = ("calls", "requests", "tokens_in", "tokens_out", "cost_usd", "carbon_g", "carbon_g_rank0")
        names += ("feedback", "score_sum", "first_time", "last_time")
        with self._lock:
            rows = self._db.execute(sql, _time_range(since, until)).fetchall()
        return [{key: r[0], **dict(zip(names, r[1:]))} for r in rows]

    def outcome_page(
        self, after: int = 0, limit: int = 500, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Up to `limit` outcomes with rowid > `after` (oldest first): id, time, strategy, expert, fan-out rank,
        tokens, cost and carbon (no embeddings), for clients that page through the log."""
        sql = (
            "SELECT id, time, strategy, expert, fanout_rank, tokens_in, tokens_out, cost_usd, carbon_g FROM outcomes "
            "WHERE id > ? AND time >= ? AND time < ? ORDER BY id LIMIT ?"
        )
        names = ("id", "time", "strategy", "expert", "fanout_rank", "tokens_in", "tokens_out", "cost_usd", "carbon_g")
        with self._lock:
            rows = self._db.execute(sql, (int(after), *_time_range(since, until), int(limit))).fetchall()
        return [dict(zip(names, r)) for r in rows]

    # --- internals ------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Add the columns a store written by an older version lacks (the lock is held)."""
        added = {
            "outcomes": {"caller": "TEXT"},
            "feedback": {"caller": "TEXT", "learned": "INTEGER NOT NULL DEFAULT 1"},
        }
        for table, wanted in added.items():
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in wanted.items():
                if name not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS feedback_caller ON feedback (caller, time)")

    def _under_cap(self, caller: str | None, now: float) -> bool:
        """Whether a feedback of `caller` at `now` is within its cap (the lock and a transaction are held)."""
        if caller is None or self.caller_cap is None:
            return True
        most, window_s = self.caller_cap
        (learned,) = self._db.execute(
            "SELECT COUNT(*) FROM feedback WHERE caller = ? AND learned = 1 AND time > ?", (caller, now - window_s)
        ).fetchone()
        return learned < most

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); the caller holds the lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _outcome_row(self, o: OutcomeRecord) -> tuple:
        return (
            o.request_id,
            o.group_id or o.request_id,
            o.fanout_rank,
            self.clock() if o.time is None else o.time,
            o.strategy,
            o.expert,
            o.policy_version,
            o.embedding.astype("<f4").tobytes(),
            None if o.probs is None else json.dumps(o.probs),
            o.carbon_budget_left,
            o.weights.model_dump_json(),
            o.latency_s,
            o.tokens_in,
            o.tokens_out,
            o.cost_usd,
            o.carbon_g,
            o.caller,
        )


def _outcome(row: tuple) -> OutcomeRecord:
    (rid, group, rank, at, strategy, expert, version, emb, probs, budget, weights, latency, t_in, t_out, cost, co2) = (
        row[:16]
    )
    return OutcomeRecord.model_construct(
        request_id=rid,
        group_id=group,
        fanout_rank=rank,
        time=at,
        strategy=strategy,
        expert=expert,
        policy_version=version,
        embedding=np.frombuffer(emb, dtype="<f4").astype(np.float32),
        probs=None if probs is None else json.loads(probs),
        carbon_budget_left=budget,
        weights=ObjectiveWeights.model_validate_json(weights),
        latency_s=latency,
        tokens_in=t_in,
        tokens_out=t_out,
        cost_usd=cost,
        carbon_g=co2,
        caller=row[16],
    )


def _time_range(since: float | None, until: float | None) -> tuple[float, float]:
    return (-math.inf if since is None else float(since), math.inf if until is None else float(until))
