"""Strategy registry: adding a strategy is one module, one line here, and one test file.

Entries are import paths so that listing or validating names never imports torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from experts.catalog import ExpertCatalog
from router_deployments.strategies.base import (
    Experience,
    RouteContext,
    RoutingDecision,
    RoutingStrategy,
    StrategyConfig,
)

STRATEGIES: dict[str, str] = {
    "dummy": "router_deployments.strategies.dummy:DummyStrategy",
    "knn": "router_deployments.strategies.knn:KnnStrategy",
    "oracle": "router_deployments.strategies.oracle:OracleStrategy",
    "task": "router_deployments.strategies.task:TaskStrategy",
    "bert": "router_deployments.strategies.bert:BertStrategy",
    "complexity": "router_deployments.strategies.complexity:ComplexityStrategy",
    "moe": "router_deployments.strategies.moe:MoEStrategy",
    "rl": "router_deployments.strategies.rl:RLStrategy",
    "greedy_threshold": "router_deployments.strategies.greedy_threshold:GreedyThresholdStrategy",
    "primal_dual": "router_deployments.strategies.primal_dual:PrimalDualStrategy",
}

# References that read what a served request does not carry (true outcomes, task labels): bench only, never served.
OFFLINE_ONLY = frozenset({"oracle", "task"})


def get_strategy_class(name: str) -> type[RoutingStrategy]:
    """The strategy class registered as `name` (imported on first use); KeyError listing the names."""
    if name not in STRATEGIES:
        raise KeyError(f"Invalid strategy {name!r}. Available strategies are {sorted(STRATEGIES)}")
    module, cls = STRATEGIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_strategy(name: str, catalog: ExpertCatalog, config: dict[str, Any] | None = None) -> RoutingStrategy:
    """Instantiate a strategy by name with its typed config; call .setup() before routing."""
    cls = get_strategy_class(name)
    return cls(catalog, cls.Config(**(config or {})))


__all__ = [
    "OFFLINE_ONLY",
    "STRATEGIES",
    "Experience",
    "RouteContext",
    "RoutingDecision",
    "RoutingStrategy",
    "StrategyConfig",
    "build_strategy",
    "get_strategy_class",
]
