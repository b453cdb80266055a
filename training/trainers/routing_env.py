"""Routing as a one-step environment that replays a full-information outcome table.

An episode is one request: a training prompt, a random objective-weight vector and a random carbon budget. The
observation is the rl router's state (router_deployments.strategies.rl.state_features), the action is an expert,
the reward is training/rewards.py's multi-objective reward of what that expert really scored and cost on that
prompt, and the episode ends. Because the table holds every expert's outcome, `OutcomeRewards` can also give the
rewards of the experts not chosen (full-information replay), which our own DQN loop uses; RLlib sees only the
chosen one, as an online router would.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments.objectives import ExpertProfile
from router_deployments.strategies.rl import normalised_weights, sample_objective_weights, state_features
from training.rewards import RewardConfig, normalised_costs, weighted_reward


@dataclass
class Contexts:
    """A batch of sampled requests: table rows, raw objective weights [n, 4] and carbon budget left [n]."""

    rows: np.ndarray
    weights: np.ndarray
    budget_left: np.ndarray


class OutcomeRewards:
    """The outcome table as a reward oracle: reward of every expert for any (prompt, weights, budget)."""

    def __init__(
        self,
        embeddings: np.ndarray,
        scores: np.ndarray,
        costs: np.ndarray,
        catalog: ExpertCatalog,
        reward: RewardConfig | None = None,
        zero_cost_prob: float = 0.2,
        other_weight_prob: float = 0.25,
        full_budget_prob: float = 0.5,
        max_weight: float = 100.0,
    ):
        if not (len(embeddings) == len(scores) == len(costs)):
            raise ValueError(f"need one row each, got {len(embeddings)}, {len(scores)}, {len(costs)}")
        if scores.shape[1] != len(catalog):
            raise ValueError(f"the table has {scores.shape[1]} experts, the catalog {len(catalog)}")
        profile = ExpertProfile(catalog)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.quality = np.asarray(scores, dtype=np.float64)
        # Per-call costs on the bandit_reward scale (units of the priciest expert's mean cost): the same scale
        # as the catalog's cost_norm when the catalog is priced from this table (catalog_from_table).
        self.cost_norm = normalised_costs(costs)
        self.carbon_norm = profile.carbon_norm.astype(np.float64)
        self.latency_norm = profile.latency_norm.astype(np.float64)
        self.reward = reward or RewardConfig()
        self.zero_cost_prob, self.other_weight_prob = zero_cost_prob, other_weight_prob
        self.full_budget_prob = full_budget_prob
        self.max_weight = max_weight

    @property
    def n_experts(self) -> int:
        return self.quality.shape[1]

    def sample(self, rng: np.random.Generator, n: int, rows: np.ndarray | None = None) -> Contexts:
        """n requests over `rows` (default all): weights as the router is asked for, budget full half the time."""
        pool = np.arange(len(self.quality)) if rows is None else np.asarray(rows)
        budget = np.where(rng.random(n) < self.full_budget_prob, 1.0, rng.random(n))
        weights = sample_objective_weights(rng, n, self.zero_cost_prob, self.other_weight_prob, high=self.max_weight)
        return Contexts(rows=rng.choice(pool, size=n), weights=weights, budget_left=budget)

    def observations(self, ctx: Contexts) -> np.ndarray:
        return state_features(self.embeddings[ctx.rows], ctx.budget_left, ctx.weights)

    def rewards(self, ctx: Contexts) -> np.ndarray:
        """Reward [n, n_experts] of every expert, under each request's normalised weights."""
        return weighted_reward(
            self.quality[ctx.rows],
            self.cost_norm[ctx.rows],
            self.carbon_norm,
            self.latency_norm,
            normalised_weights(ctx.weights),
            ctx.budget_left,
            self.reward,
        )


class RoutingEnv(gym.Env):
    """One-step gymnasium environment over an outcome table (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, config: dict | None = None):
        """`config["outcomes"]` is an OutcomeRewards (RLlib passes env_config here); `seed` is optional."""
        config = config or {}
        self.outcomes: OutcomeRewards = config["outcomes"]
        emb = self.outcomes.embeddings
        # Unit embeddings lie in [-1, 1]; the budget and the normalised weights in [0, 1].
        bound = max(1.0, float(np.abs(emb).max(initial=0.0)))
        low = np.concatenate([np.full(emb.shape[1], -bound), np.zeros(5)]).astype(np.float32)
        high = np.concatenate([np.full(emb.shape[1], bound), np.ones(5)]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.outcomes.n_experts)
        self._rng = np.random.default_rng(config.get("seed", 0))
        self._ctx: Contexts | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._ctx = self.outcomes.sample(self._rng, 1)
        return self.outcomes.observations(self._ctx)[0], {}

    def step(self, action):
        if self._ctx is None:
            raise RuntimeError("call reset() before step()")
        rewards = self.outcomes.rewards(self._ctx)[0]
        row = int(self._ctx.rows[0])
        info = {"row": row, "quality": float(self.outcomes.quality[row, int(action)])}
        self._ctx = None
        # One request is the whole episode: terminated, and the returned observation is never used.
        return np.zeros(self.observation_space.shape, np.float32), float(rewards[int(action)]), True, False, info
