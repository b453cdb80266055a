"""The router deployment: holds the enabled strategies and turns (text, preferences) into a decision.

A query that arrives without its embedding (what the ingress sends) is embedded here, with the rest of its batch,
in one call to the embedding deployment: one handle call per request on the routing path instead of two (the
ingress used to call the embedding and the router deployments in turn).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
import ray

from experts.catalog import ExpertCatalog
from router_deployments.batching import NaturalBatcher
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
    embedding: np.ndarray | None = None
    """None: the router embeds `text` (one embedding call per batch of queries)."""
    strategy: str | None = None
    weights: dict[str, float] | None = None
    """The weights the request set (the ingress sends them merged over the defaults); unset ones: the defaults."""
    carbon_budget_left: float = 1.0
    cost_budget_left: float = 1.0
    window_left: float = 1.0
    grid_intensity: float | None = None


@dataclass
class RouteAnswer:
    """A decision with the embedding it was made on (the ingress records it with the outcome)."""

    decision: RoutingDecision
    embedding: np.ndarray
    embed_s: float
    """Seconds of the embedding call made for the batch this query was in (0 when it came embedded)."""


class RouterDeployment:
    """Plain class; the builder deploys it with `settings.deployment_options()`. Strategies are built and set up
    once, at replica start."""

    async def __init__(
        self,
        settings: RouterConfig,
        *,
        catalog: ExpertCatalog,
        embedder=None,
        learner: LearnerLink | None = None,
    ):
        """`embedder`: the embedding deployment's handle, for queries that come without their embedding;
        `learner`: where to pull new weights from (None: no online learning)."""
        self.catalog = catalog
        self.embedder = embedder
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
        self.batcher = NaturalBatcher(self._route_batch, settings.max_batch_size, settings.batch_wait_timeout_s)
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

    async def route(self, query: RouteQuery) -> RouteAnswer:
        """Decide where one query goes; concurrent queries are embedded together and batched per strategy."""
        query.strategy = self.check(query.strategy)
        return await self.batcher.submit(query)

    async def _route_batch(self, queries: list[RouteQuery]) -> list[RouteAnswer]:
        missing = [i for i, q in enumerate(queries) if q.embedding is None]
        embed_s = await self._embed(queries, missing)
        decisions = await self._decide(queries)
        embedded = set(missing)
        return [
            RouteAnswer(decision=d, embedding=q.embedding, embed_s=embed_s if i in embedded else 0.0)
            for i, (q, d) in enumerate(zip(queries, decisions))
        ]

    async def _embed(self, queries: list[RouteQuery], missing: list[int]) -> float:
        """Fill in the embeddings of `queries[i] for i in missing` with one call; returns its seconds."""
        if not missing:
            return 0.0
        if self.embedder is None:
            raise ValueError("this router has no embedding deployment: send queries with their embedding")
        start = time.perf_counter()
        vectors = await self.embedder.embed_batch.remote([queries[i].text for i in missing])
        for i, vector in zip(missing, vectors):
            queries[i].embedding = vector
        return time.perf_counter() - start

    async def _decide(self, queries: list[RouteQuery]) -> list[RoutingDecision]:
        """One `route_batch` per strategy named in the batch; decisions in query order."""
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
            "batches": {"count": self.batcher.batches, "queries": self.batcher.items},
            "sync_error": self.sync.last_error if self.sync else None,
        }
