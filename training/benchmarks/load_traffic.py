"""The traffic of `routerllm bench-load`: open-loop chat requests at a fixed rate (each sent on its schedule,
whether or not the earlier ones have answered, so a slow server shows as latency, not as a lower rate), the
feedback sent for answered requests, and the latency figures of a window of samples.

Over loopback only: the client talks to the graph `python -m serve_app run` serves on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from training.data.routerbench import OutcomeTable


@dataclass
class Sample:
    """One chat request: when it was sent (seconds since the bench started), how long it took, its status (0: no
    HTTP answer at all) and the expert that answered."""

    sent: float
    latency_s: float
    status: int
    expert: str | None = None
    error: str | None = None


@dataclass
class FeedbackLedger:
    """Every feedback event sent and what the server said, by outcome id."""

    first: dict[str, int] = field(default_factory=dict)
    """Status of the first attempt of each feedback (0: no HTTP answer)."""
    resent: dict[str, int] = field(default_factory=dict)
    """Status of the second attempt of those the server refused with 503 (its message says: send it again)."""
    scores: dict[str, float] = field(default_factory=dict)

    def acknowledged(self) -> set[str]:
        """Ids the server acknowledged: 200 at either attempt, or 409 at the second (recorded by the first)."""
        ok = {rid for rid, s in self.first.items() if s == 200}
        return ok | {rid for rid, s in self.resent.items() if s in (200, 409)}

    def summary(self) -> dict[str, int]:
        """Counts of each outcome."""
        return {
            "sent": len(self.first),
            "acknowledged_first_try": sum(s == 200 for s in self.first.values()),
            "refused_503": sum(s == 503 for s in self.first.values()),
            "other_errors": sum(s not in (200, 503) for s in self.first.values()),
            "resent_200": sum(s == 200 for s in self.resent.values()),
            "resent_409_already_recorded": sum(s == 409 for s in self.resent.values()),
            "resent_failed": sum(s not in (200, 409) for s in self.resent.values()),
            "acknowledged": len(self.acknowledged()),
        }


def latency_figures(samples: list[Sample]) -> dict[str, Any]:
    """Requests, failures and p50/p99 (ms, of every request: a failed one counts with the time it took)."""
    if not samples:
        return {"requests": 0, "failed": 0, "failed_share": 0.0, "p50_ms": None, "p99_ms": None}
    ms = np.array([s.latency_s * 1000 for s in samples])
    failed = sum(s.status != 200 for s in samples)
    return {
        "requests": len(samples),
        "failed": failed,
        "failed_share": failed / len(samples),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


class Traffic:
    """Sends the table's prompts, verbatim (replay experts answer only what they recorded), to one graph."""

    def __init__(self, url: str, table: OutcomeTable, names: dict[str, int], feedback_share: float, seed: int = 0):
        self.url = url
        self.table = table
        self.column = names  # expert name -> the table column whose score is its feedback
        self.feedback_share = feedback_share
        self.rng = random.Random(seed)
        self.t0 = time.perf_counter()
        self.ledger = FeedbackLedger()
        self._feedback_tasks: set[asyncio.Task] = set()

    def now(self) -> float:
        """Seconds since the bench started."""
        return time.perf_counter() - self.t0

    async def run(self, rate: float, duration_s: float, label: str, timeout_s: float = 60.0) -> list[Sample]:
        """`rate` requests per second for `duration_s`, open loop; returns every request's sample once all have
        answered (or timed out)."""
        n = max(1, int(rate * duration_s))
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=self.url, timeout=timeout_s, limits=limits) as client:
            start = time.perf_counter()
            tasks = []
            with tqdm(total=n, desc=f"{label} @ {rate:.1f}/s", unit="req", leave=False) as bar:
                for i in range(n):
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    task = asyncio.create_task(self._chat(client))
                    task.add_done_callback(lambda _: bar.update(1))
                    tasks.append(task)
                samples = list(await asyncio.gather(*tasks))
            if self._feedback_tasks:
                await asyncio.gather(*self._feedback_tasks)
        return samples

    async def _chat(self, client: httpx.AsyncClient) -> Sample:
        row = self.rng.randrange(len(self.table))
        body = {"model": "router", "messages": [{"role": "user", "content": self.table.prompts[row]}]}
        sent = self.now()
        started = time.perf_counter()
        try:
            r = await client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as e:
            return Sample(sent, time.perf_counter() - started, 0, error=repr(e)[:200])
        latency = time.perf_counter() - started
        if r.status_code != 200:
            return Sample(sent, latency, r.status_code, error=r.text[:200])
        routing = r.json()["routing"]
        if routing.get("feedback") == "accepted" and self.rng.random() < self.feedback_share:
            score = float(self.table.scores[row, self.column[routing["expert"]]])
            task = asyncio.create_task(self._feedback(client, routing["request_id"], score))
            self._feedback_tasks.add(task)
            task.add_done_callback(self._feedback_tasks.discard)
        return Sample(sent, latency, 200, expert=routing["expert"])

    async def _feedback(self, client: httpx.AsyncClient, request_id: str, score: float) -> None:
        self.ledger.scores[request_id] = score
        self.ledger.first[request_id] = await _post_feedback(client, request_id, score)

    async def resend_refused(self) -> None:
        """Send again each feedback refused with 503, as its message asks (once the learner is back)."""
        refused = [rid for rid, s in self.ledger.first.items() if s not in (200,)]
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as client:
            for rid in tqdm(refused, desc="resending refused feedback", unit="event", leave=False):
                self.ledger.resent[rid] = await _post_feedback(client, rid, self.ledger.scores[rid])


async def _post_feedback(client: httpx.AsyncClient, request_id: str, score: float) -> int:
    try:
        r = await client.post("/v1/feedback", json={"request_id": request_id, "score": score})
    except httpx.HTTPError:
        return 0
    return r.status_code
