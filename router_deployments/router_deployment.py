"""The router deployment: holds the enabled strategies and turns (text, embedding, preferences) into a decision."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
import ray
from ray import serve

from experts.catalog import ExpertCatalog
from router_deployments.deployment_settings import LearnerLink, RouterConfig
from router_deployments.objectives import merge_weights
from router_deployments.policy_sync import PolicySync
from router_deployments.strategies import STRATEGIES, RouteContext, RoutingDecision, RoutingStrategy, build_strategy

logger = logging.getLogger(__name__)


class UnknownStrategyError(ValueError):
    """The request named a strategy this deployment does not serve."""


@dataclass
class RouteQuery:
    """One routing question as the ingress sends it."""

    text: str
    embedding: np.ndarray
    strategy: str | None = None
    weights: dict[str, float] | None = None
    """The weights the request set (the ingress sends them merged over the defaults); unset ones: the defaults."""
    carbon_budget_left: float = 1.0
    cost_budget_left: float = 1.0
    window_left: float = 1.0
    grid_intensity: float | None = None


class RouterDeployment:
    """Plain class; the builder deploys it with `settings.deployment_options()`. Strategies are built and set up
    once, at replica start."""

    async def __init__(self, settings: RouterConfig, *, catalog: ExpertCatalog, learner: LearnerLink | None = None):
        """`learner`: where to pull new weights from (None: no online learning)."""
        self.catalog = catalog
        self.default_strategy = settings.default_strategy
        self.default_weights = settings.default_weights
        self.strategies: dict[str, RoutingStrategy] = {}
        for name, cfg in settings.strategies.items():
            strategy = build_strategy(name, catalog, cfg)
            strategy.setup()
            self.strategies[name] = strategy
            if strategy.learnable and not strategy.config.checkpoint:
                # Said out loud: a random network routes at random until it is trained, which looks like a bug.
                until = " until the learner's live version arrives" if learner else " (no learner section: it stays so)"
                logger.warning(
                    "strategy %s: no checkpoint and no warm start, serving an untrained network%s", name, until
                )
        self._route_batch.set_max_batch_size(settings.max_batch_size)
        self._route_batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        self.sync: PolicySync | None = None
        if learner is not None:
            self.sync = PolicySync(
                self.strategies,
                lambda: ray.get_actor(learner.actor_name, namespace=learner.namespace),
                poll_interval_s=learner.poll_interval_s,
            )
            self.sync.start()

    def check(self, strategy: str | None) -> str:
        """Resolve a requested strategy name or raise UnknownStrategyError with the options."""
        name = strategy or self.default_strategy
        if name not in self.strategies:
            where = "registered but not enabled in this deployment" if name in STRATEGIES else "unknown"
            raise UnknownStrategyError(
                f"Strategy {name!r} is {where}. Enabled strategies are {sorted(self.strategies)}"
            )
        return name

    async def route(self, query: RouteQuery) -> RoutingDecision:
        """Decide where one query goes; concurrent queries are batched per strategy."""
        query.strategy = self.check(query.strategy)
        return await self._route_batch(query)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _route_batch(self, queries: list[RouteQuery]) -> list[RoutingDecision]:
        results: list[RoutingDecision | None] = [None] * len(queries)
        groups: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(q.strategy, []).append(i)
        for name, idx in groups.items():
            contexts = [self._context(queries[i]) for i in idx]
            strategy = self.strategies[name]
            if strategy.runs_model:
                decisions = await asyncio.to_thread(strategy.route_batch, contexts)
            else:
                decisions = strategy.route_batch(contexts)
            for i, d in zip(idx, decisions):
                results[i] = d
        return results

    def _context(self, q: RouteQuery) -> RouteContext:
        weights = merge_weights(self.default_weights, q.weights)
        return RouteContext(
            text=q.text,
            embedding=np.asarray(q.embedding, dtype=np.float32),
            weights=weights,
            carbon_budget_left=q.carbon_budget_left,
            cost_budget_left=q.cost_budget_left,
            window_left=q.window_left,
            grid_intensity=q.grid_intensity,
        )

    def info(self) -> dict:
        """Which policy version of each strategy this replica serves, and how its sync with the learner goes."""
        return {
            "replica": self.sync.replica_id if self.sync else None,
            "default_strategy": self.default_strategy,
            "strategies": {n: s.policy_version for n, s in self.strategies.items()},
            "experts": self.catalog.names,
            "swaps": self.sync.swaps if self.sync else 0,
            "sync_error": self.sync.last_error if self.sync else None,
        }
