"""The online learner's replay pool: the most recent experiences of one strategy, sampled uniformly or by priority.

With `priority: td` (LearnerConfig.replay, learner_config.ReplayConfig) an experience is drawn with probability
proportional to
    (|error| + eps + green_weight * efficiency) ** alpha,
the offline trainer's carbon-aware prioritised replay (training/trainers/replay_buffer.py) kept online: `error` is
the strategy's latest prediction error on it (`RoutingStrategy.errors`: the TD error of the one-step target for rl,
the gate's quality error for moe), new experiences enter at the largest error seen so far (so each is drawn soon),
and `efficiency` = quality * floor / (carbon_norm + floor) favours answers that were good for little carbon. The
drawn experiences come with importance weights (N * P(i)) ** -beta / max, which the strategy's learn() applies to
its loss so that prioritised sampling does not bias what it learns.

With `priority: uniform` every experience is equally likely and every weight is 1 (what the learner did before).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from router_deployments.objectives import ExpertProfile
from router_deployments.strategies import Experience
from training.online.learner_config import ReplayConfig


class ReplayPool:
    """At most `capacity` experiences, oldest dropped first, each with its priority."""

    def __init__(self, capacity: int, config: ReplayConfig, profile: ExpertProfile):
        self.capacity, self.config = capacity, config
        self.carbon_scale = max(float(profile.carbon.max()), 1e-12)
        self.items: deque[Experience] = deque()
        self.errors: deque[float] = deque()
        self.efficiency: deque[float] = deque()
        self.max_error = 1.0

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def prioritised(self) -> bool:
        """Whether draws follow the errors (so the learner should report them back with `update`)."""
        return self.config.priority == "td"

    def append(self, experience: Experience) -> None:
        """Add one experience at the largest error seen (it is drawn soon); drop the oldest beyond capacity."""
        carbon_norm = max(experience.carbon_g, 0.0) / self.carbon_scale
        quality = min(max(experience.quality, 0.0), 1.0)
        self.items.append(experience)
        self.errors.append(self.max_error)
        self.efficiency.append(quality * self.config.carbon_floor / (carbon_norm + self.config.carbon_floor))
        if len(self.items) > self.capacity:
            self.items.popleft()
            self.errors.popleft()
            self.efficiency.popleft()

    def probabilities(self) -> np.ndarray:
        """P(draw) of every experience, oldest first."""
        n = len(self.items)
        if self.config.priority == "uniform" or n == 0:
            return np.full(n, 1.0 / max(n, 1))
        c = self.config
        errors, efficiency = np.fromiter(self.errors, float, n), np.fromiter(self.efficiency, float, n)
        p = (errors + c.eps + c.green_weight * efficiency) ** c.alpha
        return p / p.sum()

    def sample(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Experience], np.ndarray]:
        """`size` draws with replacement: (their positions, the experiences, their importance weights)."""
        if size <= 0:
            return np.zeros(0, dtype=int), [], np.zeros(0)
        if not self.items:
            raise ValueError("cannot sample from an empty replay pool")
        probs = self.probabilities()
        index = rng.choice(len(probs), size=size, p=probs)
        weights = (len(probs) * probs[index]) ** -self.config.beta
        weights = weights / (len(probs) * probs.min()) ** -self.config.beta
        return index, [self.items[i] for i in index], weights

    def update(self, index: np.ndarray, errors: np.ndarray) -> None:
        """Record the latest |error| of experiences drawn at `index` (positions from `sample`, before any append)."""
        for i, e in zip(np.asarray(index, dtype=int), np.abs(np.asarray(errors, dtype=float))):
            self.errors[i] = float(e)
        if len(errors):
            self.max_error = max(self.max_error, float(np.abs(errors).max()))
