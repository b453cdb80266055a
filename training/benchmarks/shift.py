"""The shift scenario of `routerllm bench-online --shift`: traffic that changes under a learner that serves.

Phase 1 replays every training prompt of the "old" tasks once, in a seeded random order (on RouterBench: arc and
winogrande). Phase 2 is `length` requests of which `share` come from a task that phase 1 never showed (mbpp by
default) and the rest from the old tasks, each group drawn without replacement and reshuffled when used up. Warm
starts are fitted on the old tasks only, so the new task is missing from their training too.

RouterBench's train files hold 299 mbpp prompts (about 209 after the 30% hold-out), so a phase 2 longer than that
repeats mbpp prompts; the figures below are per request, repeats included.

Figures, per phase and router: average reward; the best fixed expert of that phase in hindsight and the regret
against it (summed and per request); and, after the shift, how many requests pass before the router's reward over
the last `window` requests comes within `tolerance` of that phase's best fixed expert's average, and the reward of
each run of `window` requests after the shift (the curve).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SHIFT_TASK = "mbpp"
"""The task phase 2 is heavy in and phase 1 (and every warm start) never sees."""


@dataclass(frozen=True)
class ShiftPlan:
    """How the stream shifts: the new task, how much of phase 2 it takes, and how long phase 2 is."""

    new_task: str = SHIFT_TASK
    length: int = 600
    """Requests in phase 2."""
    share: float = 0.8
    """Fraction of phase 2 drawn from the new task."""
    window: int = 100
    """Trailing requests averaged when checking whether a router has caught up after the shift."""
    tolerance: float = 0.02
    """How close to the new phase's best fixed expert counts as caught up."""

    def __post_init__(self) -> None:
        if self.length < 1 or not 0 < self.share <= 1 or self.window < 1 or self.tolerance < 0:
            raise ValueError(f"invalid shift plan {self}: need length >= 1, 0 < share <= 1, window >= 1")


def old_task_rows(tasks: list[str], plan: ShiftPlan) -> np.ndarray:
    """Rows of every task but the new one (what phase 1 and the warm starts see)."""
    return np.flatnonzero(np.asarray(tasks) != plan.new_task)


def shifted_rows(tasks: list[str], plan: ShiftPlan, seed: int) -> tuple[np.ndarray, int]:
    """The stream's training rows in order, and the event index where phase 2 starts."""
    labels = np.asarray(tasks)
    old, new = old_task_rows(tasks, plan), np.flatnonzero(labels == plan.new_task)
    if len(new) == 0 or len(old) == 0:
        raise ValueError(
            f"the shift scenario needs prompts of task {plan.new_task!r} and of other tasks; the data has tasks "
            f"{sorted(set(tasks))}"
        )
    rng = np.random.default_rng(seed)
    phase_one = rng.permutation(old)
    from_new = rng.random(plan.length) < plan.share
    draws = {True: _cycling(new, rng), False: _cycling(old, rng)}
    phase_two = np.array([next(draws[bool(flag)]) for flag in from_new], dtype=int)
    return np.concatenate([phase_one, phase_two]), len(phase_one)


def _cycling(rows: np.ndarray, rng: np.random.Generator):
    """Rows without replacement, reshuffled each time they run out."""
    while True:
        yield from rng.permutation(rows)


def phase_figures(
    rewards: dict[str, np.ndarray], expert_rewards: np.ndarray, shift_at: int, plan: ShiftPlan, names: list[str]
) -> dict[str, Any]:
    """Per-phase best fixed expert, and each router's reward, regret and catch-up after the shift.

    `rewards`: router name -> reward of every event; `expert_rewards`: [events, n_experts], what each expert would
    have earned on each event."""
    bounds = [(0, shift_at), (shift_at, len(expert_rewards))]
    phases = []
    for start, end in bounds:
        means = expert_rewards[start:end].mean(axis=0)
        best = int(means.argmax())
        phases.append(
            {"start": start, "end": end, "best_fixed": {"expert": names[best], "average_reward": float(means[best])}}
        )
    routers = {}
    for name, r in rewards.items():
        per_phase = []
        for phase, (start, end) in zip(phases, bounds):
            best = names.index(phase["best_fixed"]["expert"])
            regret = float((expert_rewards[start:end, best] - r[start:end]).sum())
            per_phase.append(
                {
                    "average_reward": float(r[start:end].mean()),
                    "regret": regret,
                    "regret_per_request": regret / (end - start),
                }
            )
        target = phases[1]["best_fixed"]["average_reward"] - plan.tolerance
        after = r[shift_at:]
        starts = range(0, len(after), plan.window)
        routers[name] = {
            "phases": per_phase,
            "requests_to_catch_up": catch_up(after, target, plan.window),
            # The curve after the shift: mean reward of each run of `window` requests from the shift on.
            "after_shift_windows": [float(after[i : i + plan.window].mean()) for i in starts],
        }
    return {"plan": vars(plan) | {"shift_at": shift_at}, "phases": phases, "routers": routers}


def catch_up(rewards: np.ndarray, target: float, window: int) -> int | None:
    """Requests after the shift until the mean reward of the last `window` requests first reaches `target`: at
    the soonest `window` (a full window must have been served), None if it never does."""
    if len(rewards) == 0:
        return None
    sums = np.cumsum(rewards)
    n = np.arange(1, len(rewards) + 1)
    trailing = (sums - np.concatenate([np.zeros(window), sums[:-window]])[: len(sums)]) / np.minimum(n, window)
    reached = np.flatnonzero((trailing >= target) & (n >= window))
    return int(reached[0] + 1) if len(reached) else None
