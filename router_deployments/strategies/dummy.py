"""Random baseline: a seeded, reproducible uniform choice."""

from __future__ import annotations

import numpy as np

from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig


class DummyConfig(StrategyConfig):
    """The random baseline's seed."""

    seed: int = 0


class DummyStrategy(RoutingStrategy):
    """Picks an expert uniformly at random from a seeded generator (same seed, same sequence)."""

    name = "dummy"
    Config = DummyConfig

    def __init__(self, catalog, config=None):
        super().__init__(catalog, config)
        self._rng = np.random.default_rng(self.config.seed)

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Uniform random scores."""
        return self._rng.random((len(contexts), len(self.catalog)))
