"""Routing as an environment that replays a full-information outcome table: one request per episode, or a budget
window of requests per episode.

An episode is one request: a training prompt, a random objective-weight vector and a random carbon budget. The
observation is the rl router's state (router_deployments.strategies.rl.state_features), the action is an expert,
the reward is training/rewards.py's multi-objective reward of what that expert really scored and cost on that
prompt, and the episode ends. Because the table holds every expert's outcome, `OutcomeRewards` can also give the
rewards of the experts not chosen (full-information replay), which our own DQN loop uses; RLlib sees only the
chosen one, as an online router would.

`BudgetWindows` is the other episode shape: a window of requests sharing one carbon budget (routerllm
bench-budget). The state adds the budget and window left, a call spends its expert's carbon, the serving guard
(router_deployments/budget_guard.py) decides which experts a call can afford, and the reward carries the budget
bonus and overrun penalty (training/rewards.budget_terms); an overrun ends the episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments import budget_guard
from router_deployments.objectives import ExpertProfile
from router_deployments.strategies.rl import (
    N_BUDGET_FEATURES,
    N_WEIGHT_FEATURES,
    normalised_weights,
    sample_objective_weights,
    state_features,
)
from training.rewards import RewardConfig, budget_terms, normalised_costs, weighted_reward


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
        # Unit embeddings lie in [-1, 1]; the budget features and the normalised weights in [0, 1].
        bound = max(1.0, float(np.abs(emb).max(initial=0.0)))
        extra = N_BUDGET_FEATURES + N_WEIGHT_FEATURES
        low = np.concatenate([np.full(emb.shape[1], -bound), np.zeros(extra)]).astype(np.float32)
        high = np.concatenate([np.full(emb.shape[1], bound), np.ones(extra)]).astype(np.float32)
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


@dataclass
class WindowStep:
    """One step of a batch of parallel budget windows, with every expert's transition (full information).

    Shapes: obs [n, dim]; allowed [n, M]; rewards, dones [n, M]; next_obs [n, M, dim]; next_allowed [n, M, M]."""

    obs: np.ndarray
    allowed: np.ndarray
    """Experts each request can afford (budget_guard.affordable)."""
    rewards: np.ndarray
    dones: np.ndarray
    """Whether the window ends after that expert's call: the last request, or an overrun."""
    next_obs: np.ndarray
    next_allowed: np.ndarray
    quality: np.ndarray
    """Recorded quality [n, M] of every expert on the request."""


class BudgetWindows:
    """Parallel budget windows over an outcome table: the episodes of the rl trainer's --window mode.

    A window is `window` requests drawn from `rows`; its carbon budget is `budget_frac` x what always routing to
    the dirtiest expert would spend on it (carbon in units of that expert's call, catalog carbon_norm). Request t
    (0-based) sees state_features(embedding, carbon left / budget, (window - t) / window, quality-only weights).
    Its reward for expert a is the expert's recorded quality minus `baseline` (a constant per request: with a fixed
    window length it moves every action's value alike and keeps the values small), plus the budget bonus when the
    call leaves the rest of the window its reserve at the greenest expert, minus the overrun penalty (and the end
    of the episode) when it does not.

    With `shaping_price` mu > 0 the reward is also shaped with the potential Phi(s) = mu x carbon left (0 once the
    window has ended): r + gamma * Phi(s') - Phi(s) (Ng, Harada and Russell 1999), which leaves the best policy
    as it is. Each call then pays gamma * mu per unit of its carbon at once and the last call pays for what is
    left unspent, so Q starts from a primal-dual price and bootstrapping has only the correction to learn.
    """

    def __init__(
        self,
        outcomes: OutcomeRewards,
        window: int,
        budget_frac: float,
        reward: RewardConfig | None = None,
        baseline: float | None = None,
        shaping_price: float = 0.0,
        gamma: float = 1.0,
    ):
        if window < 1:
            raise ValueError(f"a budget window needs at least one request, got {window}")
        if not 0 < budget_frac:
            raise ValueError(f"the budget fraction must be positive, got {budget_frac}")
        self.outcomes, self.window, self.budget_frac = outcomes, window, budget_frac
        self.carbon = outcomes.carbon_norm
        self.budget = budget_frac * window * float(self.carbon.max())
        self.reward = reward or outcomes.reward
        self.baseline = float(outcomes.quality.mean()) if baseline is None else float(baseline)
        if shaping_price < 0:
            raise ValueError(f"the shaping price must be non-negative, got {shaping_price}")
        self.shaping_price, self.gamma = shaping_price, gamma
        self.weights = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)

    def new_windows(self, rng: np.random.Generator, n: int, rows: np.ndarray) -> np.ndarray:
        """The table rows of n windows [n, window], each drawn without replacement where `rows` allows."""
        rows = np.asarray(rows)
        replace = len(rows) < self.window
        return np.stack([rng.choice(rows, size=self.window, replace=replace) for _ in range(n)])

    def reserve(self, t) -> np.ndarray:
        """Carbon kept for the requests after request t (budget_guard.reserve_for); t broadcasts over windows."""
        after = self.window - np.asarray(t, dtype=np.float64) - 1
        return np.vectorize(lambda a: budget_guard.reserve_for(self.carbon, a))(after)

    def random_starts(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n (request index, carbon left) pairs to start windows from anywhere: a uniform position, a budget left
        uniform between what the rest of the window needs at the greenest expert and the whole budget. A policy's
        own windows visit only the budgets it leaves itself; these cover the rest of the (budget, window) square."""
        t = rng.integers(0, self.window, size=n)
        low = float(self.carbon.min()) * (self.window - t)
        return t, low + rng.random(n) * np.maximum(self.budget - low, 0.0)

    def observe(self, rows: np.ndarray, t, carbon_left: np.ndarray) -> np.ndarray:
        """States [n, dim] of request t (one index, or one per window) of each window, `carbon_left` [n] unspent."""
        n = len(carbon_left)
        t = np.broadcast_to(np.asarray(t), (n,))
        window_left = (self.window - t) / self.window
        embeddings = self.outcomes.embeddings[rows[np.arange(n), t]]
        return state_features(embeddings, carbon_left / self.budget, self.weights, window_left)

    def allowed(self, t, carbon_left: np.ndarray) -> np.ndarray:
        """[n, M] experts request t of each window can afford."""
        reserve = np.broadcast_to(self.reserve(t), (len(carbon_left),))
        return np.stack([budget_guard.affordable(self.carbon, c, r) for c, r in zip(carbon_left, reserve)])

    def step(self, rows: np.ndarray, t, carbon_left: np.ndarray) -> WindowStep:
        """Every expert's transition at request t (one index, or one per window) of each window (see WindowStep)."""
        n, m = len(carbon_left), len(self.carbon)
        t = np.broadcast_to(np.asarray(t), (n,))
        obs = self.observe(rows, t, carbon_left)
        allowed = self.allowed(t, carbon_left)
        quality = self.outcomes.quality[rows[np.arange(n), t]]
        rewards = quality - self.baseline + budget_terms(allowed, self.reward)
        last = (t == self.window - 1)[:, None]
        dones = np.where(allowed & ~last, 0.0, 1.0)
        if self.shaping_price > 0:  # potential-based shaping (the class docstring): Phi = mu * carbon left
            after_call = carbon_left[:, None] - self.carbon[None, :]
            rewards = rewards + self.shaping_price * (self.gamma * (1 - dones) * after_call - carbon_left[:, None])
        after = (carbon_left[:, None] - self.carbon[None, :]).reshape(-1)  # [n * M]
        # The next request of each window (the last one's own row stands in where the window ends: done).
        next_t = np.repeat(np.minimum(t + 1, self.window - 1), m)
        next_rows = np.repeat(rows, m, axis=0)
        next_obs = self.observe(next_rows, next_t, after).reshape(n, m, -1)
        next_allowed = self.allowed(next_t, after).reshape(n, m, m)
        return WindowStep(obs, allowed, rewards, dones, next_obs, next_allowed, quality)
