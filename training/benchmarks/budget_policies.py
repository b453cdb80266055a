"""The budget-aware policies of `routerllm bench-budget`, each trained or tuned on the training part only.

- `rl`: the rl strategy trained over budget windows of this length and budget (train_rl --window, Double DQN
  bootstrapping across the window), plain trunk; `rl_bn`: the same with the seed's trunk (BatchNorm, dropout 0.2).
- `moe`: the moe strategy (train_moe) routing with a carbon weight in its multi-objective adjustment, the weight
  that reaches the best quality on the training windows.
- `greedy_threshold` and `primal_dual`: the two baselines (router_deployments/strategies/), decision rules over a
  quality predictor (the same trained moe gate as `moe` by default, so that the policies differ by their rule, or
  the kNN index), their margin / dual price and step tuned on the training windows by a small grid.

Every policy goes through the same budget guard in the replay (budget_replay.py). Tuning replays the training
prompts as windows of the benchmark's length; the best setting is the one with the highest mean quality there
(lowest carbon among ties). The kNN and moe predictors score the training prompts in-sample when tuning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RoutingStrategy
from router_deployments.strategies.greedy_threshold import GreedyThresholdConfig, GreedyThresholdStrategy
from router_deployments.strategies.knn import KnnStrategy
from router_deployments.strategies.primal_dual import PrimalDualConfig, PrimalDualStrategy
from training.benchmarks.budget_replay import cut_windows, replay_windows
from training.data.prepared import PreparedData
from training.trainers import require_trainer, trainer_options

POLICIES = ("rl", "rl_bn", "moe", "greedy_threshold", "primal_dual")
# The seed design's Q trunk, measured against the plain one.
SEED_TRUNK = {"batch_norm": True, "dropout": 0.2}
# Tuning grids (carbon weights and prices are utility per unit of carbon_norm; margins are predicted quality).
MOE_CARBON_WEIGHTS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5)
MARGINS = (0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)
PRICES = (0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)
PACE_STEPS = (0.0, 0.3, 1.0, 3.0)
# rl's trainer settings in this benchmark (each can be overridden with --set rl.OPTION=VALUE).
RL_DEFAULTS = {"total_steps": 12000, "eval_every": 50, "over_budget_penalty": 1.0, "budget_bonus": 0.05}
TUNING_PASSES = 2


@dataclass
class FittedPolicy:
    """A policy ready to replay: its strategy, the weights it routes with, and what was tuned or trained."""

    name: str
    strategy: RoutingStrategy
    weights: ObjectiveWeights = field(default_factory=ObjectiveWeights)
    params: dict[str, Any] = field(default_factory=dict)
    fit_s: float = 0.0


class PolicyFactory:
    """Builds each policy for a budget fraction; the predictors that do not depend on it are fitted once."""

    def __init__(
        self,
        data: PreparedData,
        window: int,
        call_carbon: np.ndarray,
        seed: int = 0,
        options: dict[str, list[str]] | None = None,
        progress: bool = True,
        predictor: str = "moe",
    ):
        self.data, self.window, self.call_carbon, self.seed = data, window, np.asarray(call_carbon), seed
        self.options, self.progress, self.predictor = options or {}, progress, predictor
        rng = np.random.default_rng(seed + 1)
        orders = [rng.permutation(len(data.train)) for _ in range(TUNING_PASSES)]
        self.tuning_windows = [w for order in orders for w in cut_windows(order, window)]
        self._knn: KnnStrategy | None = None
        self._moe: RoutingStrategy | None = None

    def build(self, name: str, budget_frac: float) -> FittedPolicy:
        """Train or tune policy `name` for windows with this budget fraction."""
        builders = {
            "rl": lambda: self._rl(budget_frac, {}),
            "rl_bn": lambda: self._rl(budget_frac, SEED_TRUNK),
            "moe": lambda: self._moe_policy(budget_frac),
            "greedy_threshold": lambda: self._greedy(budget_frac),
            "primal_dual": lambda: self._primal_dual(budget_frac),
        }
        if name not in builders:
            raise ValueError(f"Invalid policy {name!r}. Available policies are {list(POLICIES)}")
        started = time.perf_counter()
        policy = builders[name]()
        policy.fit_s = time.perf_counter() - started
        return policy

    # --- tuning on the training windows -------------------------------------------------------------------
    def tuning_quality(self, strategy: RoutingStrategy, budget_frac: float, weights=None) -> tuple[float, float]:
        """(mean quality, carbon share of always-largest) of the guarded strategy on the training windows."""
        data = self.data
        replay = replay_windows(
            strategy,
            self.tuning_windows,
            data.train.prompts,
            data.train_embeddings,
            self.call_carbon,
            budget_frac,
            weights=weights,
        )
        rows = np.concatenate(self.tuning_windows)
        quality = float(data.train.scores[rows, replay.choices].mean())
        return quality, float(replay.window_carbon.sum() / (self.call_carbon.max() * len(rows)))

    def _best(self, candidates: list[tuple[dict[str, Any], RoutingStrategy, ObjectiveWeights | None]], frac: float):
        scored = []
        for params, strategy, weights in candidates:
            quality, carbon = self.tuning_quality(strategy, frac, weights)
            scored.append((quality, -carbon, params, strategy, weights))
        quality, neg_carbon, params, strategy, weights = max(scored, key=lambda s: (s[0], s[1]))
        return params | {"train_quality": quality, "train_carbon_frac": -neg_carbon}, strategy, weights

    # --- the policies -------------------------------------------------------------------------------------
    def knn(self) -> KnnStrategy:
        """RouterBench's kNN router indexed on the training part (fitted once)."""
        if self._knn is None:
            data = self.data
            self._knn = KnnStrategy(data.catalog).fit(data.train_embeddings, data.train.scores)
        return self._knn

    def moe(self) -> RoutingStrategy:
        """The moe strategy trained on the training part (fitted once)."""
        if self._moe is None:
            module = require_trainer("moe")
            kwargs = trainer_options(module, self.options.get("moe", []) + ["--seed", str(self.seed)])
            kwargs["progress"] = False
            self._moe = module.fit_from_table(self.data.train, self.data.train_embeddings, self.data.catalog, **kwargs)
        return self._moe

    def _with_predictor(self, strategy):
        return strategy.use_predictor(self.moe() if self.predictor == "moe" else self.knn())

    def _greedy(self, frac: float) -> FittedPolicy:
        catalog = self.data.catalog
        candidates = []
        for m in MARGINS:
            for w in PACE_STEPS:
                strategy = GreedyThresholdStrategy(catalog, GreedyThresholdConfig(margin=m, widen=w))
                candidates.append(({"margin": m, "widen": w}, self._with_predictor(strategy), None))
        params, strategy, _ = self._best(candidates, frac)
        return FittedPolicy("greedy_threshold", strategy, params=params | {"predictor": self.predictor})

    def _primal_dual(self, frac: float) -> FittedPolicy:
        catalog = self.data.catalog
        candidates = []
        for p in PRICES:
            for s in PACE_STEPS:
                strategy = PrimalDualStrategy(catalog, PrimalDualConfig(price=p, step=s))
                candidates.append(({"price": p, "step": s}, self._with_predictor(strategy), None))
        params, strategy, _ = self._best(candidates, frac)
        return FittedPolicy("primal_dual", strategy, params=params | {"predictor": self.predictor})

    def _moe_policy(self, frac: float) -> FittedPolicy:
        candidates = [
            ({"carbon_weight": w}, self.moe(), ObjectiveWeights(quality=1.0, carbon=w)) for w in MOE_CARBON_WEIGHTS
        ]
        params, strategy, weights = self._best(candidates, frac)
        return FittedPolicy("moe", strategy, weights=weights, params=params)

    def _rl(self, frac: float, trunk: dict[str, Any]) -> FittedPolicy:
        module = require_trainer("rl")
        flags = [f for k, v in RL_DEFAULTS.items() for f in (f"--{k}", str(v))]
        flags += self.options.get("rl", []) + ["--seed", str(self.seed)]
        kwargs = trainer_options(module, flags)
        kwargs.update(window=self.window, budget_frac=frac, progress=self.progress, **trunk)
        data = self.data
        strategy = module.fit_from_table(data.train, data.train_embeddings, data.catalog, **kwargs)
        keys = ("total_steps", "gamma", "window", "budget_frac", "batch_norm", "dropout", "hidden")
        params = {k: kwargs[k] for k in keys}
        params["train_quality"], params["train_carbon_frac"] = self.tuning_quality(strategy, frac)
        return FittedPolicy("rl_bn" if trunk else "rl", strategy, params=params)
