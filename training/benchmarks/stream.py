"""The stream the online benchmark replays, the contract of a router under test, and what the table alone tells.

A Stream is prepared data (training/data/prepared.py) plus the order its training prompts are replayed in; the
feedback for a choice is the score that expert recorded on that prompt, the reward training/rewards.bandit_reward:
    reward = score of the answer returned - lam * cost of every expert called / (priciest expert's mean cost).
Anything that implements StreamRouter can be replayed: the online learners (online.py), Vowpal Wabbit
(vowpal_wabbit.py), the whole Serve graph over HTTP (over_http.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from training.benchmarks.shift import ShiftPlan, shifted_rows
from training.data.prepared import PreparedData
from training.data.routerbench import OutcomeTable
from training.rewards import bandit_reward


@dataclass
class Stream(PreparedData):
    """The replayed prompts (training rows, in stream order) and everything needed to score a choice on them."""

    rows: np.ndarray
    """Training-table row of each event."""
    lam: float
    max_mean_cost: float
    shift_at: int | None = None
    """Event where phase 2 of a shift scenario starts (shift.py); None for a plain replay."""

    @classmethod
    def replay(cls, data: PreparedData, passes: int, lam: float, seed: int) -> Stream:
        """`passes` passes over data.train, each in its own seeded random order; rewards weigh cost by `lam`."""
        rng = np.random.default_rng(seed)
        rows = np.concatenate([rng.permutation(len(data.train)) for _ in range(passes)])
        max_mean_cost = float(data.train.costs.mean(axis=0).max())
        return cls(**vars(data), rows=rows, lam=lam, max_mean_cost=max_mean_cost)

    @classmethod
    def shifted(cls, data: PreparedData, plan: ShiftPlan, lam: float, seed: int) -> Stream:
        """The shift scenario (shift.py): the old tasks once, then a phase heavy in a task phase 1 never showed."""
        rows, shift_at = shifted_rows(data.train.tasks, plan, seed)
        max_mean_cost = float(data.train.costs.mean(axis=0).max())
        return cls(**vars(data), rows=rows, lam=lam, max_mean_cost=max_mean_cost, shift_at=shift_at)

    def expert_rewards(self) -> np.ndarray:
        """What each expert would have earned on each event of the stream, [events, n_experts]."""
        return self.rewards(self.train)[self.rows]

    def rewards(self, table: OutcomeTable) -> np.ndarray:
        """bandit_reward of every expert on every prompt of `table`, [n, n_experts]."""
        return bandit_reward(table.scores, table.costs, self.lam, self.max_mean_cost)

    def reward(self, row: int, experts: list[int]) -> float:
        """The answer's (first expert's) score minus lam times the cost of every expert called."""
        cost = float(self.train.costs[row, experts].sum())
        return float(bandit_reward(self.train.scores[row, experts[0]], cost, self.lam, self.max_mean_cost))


class StreamRouter(Protocol):
    """A router under test. The `--through-serve` mode implements this over HTTP (route = a chat completion with
    model "router", feedback = POST /v1/feedback with the recorded score)."""

    def route(self, event: int, row: int) -> list[int]:
        """Experts called for this event (catalog indices); the first one's answer is returned."""

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        """Report the recorded outcome of each expert called."""

    def greedy(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        """The final policy's choice (no exploration) for each held-out prompt."""

    def summary(self) -> dict[str, Any]:
        """Extra figures for results.json (publishes, ...)."""


def replay_stream(router: StreamRouter, stream: Stream, desc: str = "", progress: bool = True) -> np.ndarray:
    """Drive one router through the stream; returns the reward of every event."""
    rewards = np.empty(len(stream.rows))
    for event, row in enumerate(tqdm(stream.rows, desc=desc, unit="req", disable=not progress, leave=False)):
        experts = router.route(event, int(row))
        rewards[event] = stream.reward(int(row), experts)
        router.feedback(event, int(row), experts)
    return rewards


def held_out_figures(stream: Stream, choices: np.ndarray) -> dict[str, float]:
    """Quality, cost per 1,000 requests and reward of top-1 choices on the held-out prompts."""
    rows = np.arange(len(stream.held_out))
    return {
        "quality": float(stream.held_out.scores[rows, choices].mean()),
        "cost_per_1k": float(stream.held_out.costs[rows, choices].mean() * 1000.0),
        "reward": float(stream.rewards(stream.held_out)[rows, choices].mean()),
    }


def window_means(rewards: np.ndarray, window: int) -> list[float]:
    """Mean reward of each run of `window` events (the learning curve)."""
    return [float(rewards[i : i + window].mean()) for i in range(0, len(rewards), window)]


def references(stream: Stream) -> dict[str, Any]:
    """Best fixed expert in hindsight (on the stream), oracle and random, on the stream and held out."""
    on_stream = stream.expert_rewards()
    held = stream.rewards(stream.held_out)
    best = int(on_stream.mean(axis=0).argmax())
    n_held = len(stream.held_out)
    oracle = held.argmax(axis=1)
    return {
        "best_fixed": {
            "expert": stream.catalog.names[best],
            "average_reward": float(on_stream[:, best].mean()),
            "held_out": held_out_figures(stream, np.full(n_held, best)),
        },
        "oracle": {"average_reward": float(on_stream.max(axis=1).mean()), "held_out": held_out_figures(stream, oracle)},
        "random": {
            "average_reward": float(on_stream.mean()),
            "held_out": {"reward": float(held.mean()), "quality": float(stream.held_out.scores.mean())},
        },
        "best_fixed_per_task": best_fixed_per_task(stream, on_stream, held),
        "per_expert_average_reward": dict(zip(stream.catalog.names, on_stream.mean(axis=0).tolist())),
    }


def best_fixed_per_task(stream: Stream, on_stream: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """The best expert of each task in hindsight on the stream, on the stream and on the held-out prompts of that task.

    A router that knew each prompt's task and each task's best expert in advance: how much a contextual policy can
    gain over the best fixed expert when prompts of a task look alike (RouterBench's do), the headroom the online
    learners compete for. It reads the task label, which a served request does not carry."""
    tasks = np.asarray(stream.train.tasks)[stream.rows]
    held_tasks = np.asarray(stream.held_out.tasks)
    stream_choice = np.empty(len(tasks), dtype=int)
    held_choice = np.full(len(held_tasks), int(on_stream.mean(axis=0).argmax()))
    experts = {}
    for task in sorted(set(tasks)):
        best = int(on_stream[tasks == task].mean(axis=0).argmax())
        stream_choice[tasks == task] = best
        held_choice[held_tasks == task] = best
        experts[task] = stream.catalog.names[best]
    return {
        "experts": experts,
        "average_reward": float(on_stream[np.arange(len(tasks)), stream_choice].mean()),
        "held_out": held_out_figures(stream, held_choice),
    }
