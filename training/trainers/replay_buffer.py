"""A prioritised replay buffer that also favours green, accurate outcomes (for the rl router's DQN).

Priority of transition i (Schaul et al. 2016, plus a carbon term):

    efficiency_i = quality_i * carbon_floor / (carbon_norm_i + carbon_floor)   in [0, 1]: accuracy per unit of
                   carbon, scaled so that a right answer at zero carbon scores 1 and one from the dirtiest expert
                   (carbon_norm = 1) scores carbon_floor / (1 + carbon_floor)
    priority_i   = (|td_error_i| + eps + green_weight * efficiency_i) ** alpha

so surprising outcomes (large TD error) are replayed more, as in plain prioritised replay, and among equally
surprising ones the cheap-in-carbon successes come first. New transitions get the largest TD error seen so far, so
each is replayed at least once soon. Sampling is proportional to priority; the importance weights
(N * P(i)) ** -beta / max_j (N * P(j)) ** -beta undo the bias this puts on the loss.

One-step transitions (a routing decision is a whole episode) store no next state. A buffer made with
`n_actions` > 0 also stores each transition's next state, whether the episode ended there, and which actions the
policy may take in the next state (the budget guard's affordable experts): the transitions of a budget window,
for the Double DQN target that bootstraps across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReplayBatch:
    """A sampled minibatch; `index` lets the trainer write TD errors back with update_priorities."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    weights: np.ndarray
    index: np.ndarray
    next_obs: np.ndarray | None = None
    dones: np.ndarray | None = None
    next_allowed: np.ndarray | None = None


class CarbonAwareReplayBuffer:
    """Fixed-capacity ring buffer of (obs, action, reward, quality, carbon_norm) with carbon-aware priorities."""

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        alpha: float = 0.6,
        green_weight: float = 0.5,
        carbon_floor: float = 0.1,
        eps: float = 1e-3,
        seed: int = 0,
        n_actions: int = 0,
    ):
        if capacity <= 0 or obs_dim <= 0:
            raise ValueError(f"capacity and obs_dim must be positive, got {capacity}, {obs_dim}")
        if carbon_floor <= 0:
            raise ValueError(f"carbon_floor must be positive, got {carbon_floor}")
        self.capacity, self.alpha, self.green_weight = capacity, alpha, green_weight
        self.carbon_floor, self.eps = carbon_floor, eps
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.efficiency = np.zeros(capacity, dtype=np.float64)
        self.td_error = np.zeros(capacity, dtype=np.float64)
        self.n_actions = n_actions
        if n_actions > 0:
            self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
            self.dones = np.zeros(capacity, dtype=np.float32)
            self.next_allowed = np.ones((capacity, n_actions), dtype=bool)
        self.max_td_error = 1.0
        self.size = 0
        self._next = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def green_efficiency(self, quality: np.ndarray, carbon_norm: np.ndarray) -> np.ndarray:
        """Accuracy per unit of carbon, scaled into [0, 1] (see the module docstring)."""
        quality = np.clip(np.asarray(quality, dtype=np.float64), 0.0, 1.0)
        carbon = np.clip(np.asarray(carbon_norm, dtype=np.float64), 0.0, None)
        return quality * self.carbon_floor / (carbon + self.carbon_floor)

    def add(self, obs, actions, rewards, quality, carbon_norm, next_obs=None, dones=None, next_allowed=None) -> None:
        """Append a batch of transitions (obs [n, obs_dim], the rest [n]); the oldest are overwritten. A buffer
        with next states also takes next_obs [n, obs_dim], dones [n] and next_allowed [n, n_actions] (default:
        every action allowed)."""
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        n = len(obs)
        if (next_obs is not None) != (self.n_actions > 0):
            raise ValueError("next states go with a buffer made with n_actions > 0, and only there")
        columns = [np.broadcast_to(np.asarray(v), (n,)) for v in (actions, rewards, quality, carbon_norm)]
        actions, rewards, quality, carbon_norm = columns
        slots = (self._next + np.arange(n)) % self.capacity
        self.obs[slots] = obs
        self.actions[slots] = actions
        self.rewards[slots] = rewards
        self.efficiency[slots] = self.green_efficiency(quality, carbon_norm)
        self.td_error[slots] = self.max_td_error
        if self.n_actions > 0:
            self.next_obs[slots] = np.atleast_2d(np.asarray(next_obs, dtype=np.float32))
            self.dones[slots] = np.broadcast_to(np.asarray(0.0 if dones is None else dones), (n,))
            allowed = np.ones((n, self.n_actions), dtype=bool) if next_allowed is None else next_allowed
            self.next_allowed[slots] = np.broadcast_to(np.asarray(allowed, dtype=bool), (n, self.n_actions))
        self._next = int((self._next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def priorities(self) -> np.ndarray:
        """Current priority of every stored transition."""
        live = slice(0, self.size)
        return (self.td_error[live] + self.eps + self.green_weight * self.efficiency[live]) ** self.alpha

    def sample(self, batch_size: int, beta: float = 0.4) -> ReplayBatch:
        """Draw `batch_size` transitions with probability proportional to priority (with replacement)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        p = self.priorities()
        probs = p / p.sum()
        index = self.rng.choice(self.size, size=batch_size, p=probs)
        weights = (self.size * probs[index]) ** (-beta)
        weights = weights / ((self.size * probs.min()) ** (-beta))
        return ReplayBatch(
            obs=self.obs[index],
            actions=self.actions[index],
            rewards=self.rewards[index],
            weights=weights.astype(np.float32),
            index=index,
            next_obs=self.next_obs[index] if self.n_actions > 0 else None,
            dones=self.dones[index] if self.n_actions > 0 else None,
            next_allowed=self.next_allowed[index] if self.n_actions > 0 else None,
        )

    def update_priorities(self, index: np.ndarray, td_errors: np.ndarray) -> None:
        """Record the latest |TD error| of sampled transitions."""
        td = np.abs(np.asarray(td_errors, dtype=np.float64))
        self.td_error[index] = td
        self.max_td_error = max(self.max_td_error, float(td.max(initial=0.0)))
