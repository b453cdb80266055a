"""The router deployment returns RoutingDecision objects, the type a strategy makes; its settings compute its
Serve options."""

import asyncio
import dataclasses

import numpy as np
import pytest

from experts.catalog import ExpertCatalog
from router_deployments.deployment_settings import EmbeddingConfig, RouterConfig
from router_deployments.router_deployment import RouteQuery, RouterDeployment, UnknownStrategyError
from router_deployments.strategies import RoutingDecision


def catalog() -> ExpertCatalog:
    figures = dict(params_b=1, energy_per_token_j=1, expected_latency_s=1, quality_prior=0.5)
    return ExpertCatalog(
        experts=[
            dict(
                name=n,
                backend={"kind": "replay", "data": "x.csv", "model": n},
                price_in_per_1k=p,
                price_out_per_1k=p,
                **figures,
            )
            for n, p in (("cheap", 0.0001), ("dear", 0.01))
        ]
    )


class FakeEmbeddingHandle:
    """`embed_batch.remote(texts)` as the embedding deployment answers it; remembers each batch it was sent."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.embed_batch = self

    async def remote(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return np.stack([np.full(4, len(t), np.float32) for t in texts])


async def _router(settings: RouterConfig, embedder=None) -> RouterDeployment:
    router = RouterDeployment.__new__(RouterDeployment)
    await router.__init__(settings, catalog=catalog(), embedder=embedder)  # async __init__, as Serve calls it
    return router


def test_routes_return_routing_decisions():
    settings = RouterConfig(strategies={"dummy": {"seed": 0}}, default_strategy="dummy")

    async def main():
        router = await _router(settings)
        queries = [RouteQuery(text=f"q{i}", embedding=np.ones(4, np.float32)) for i in range(3)]
        decisions = await asyncio.gather(*(router.route(q) for q in queries))
        with pytest.raises(UnknownStrategyError, match="registered but not enabled"):
            await router.route(RouteQuery(text="x", embedding=np.ones(4), strategy="moe"))
        return decisions

    answers = asyncio.run(main())
    assert all(a.embed_s == 0.0 for a in answers)  # they came embedded
    decisions = [a.decision for a in answers]
    assert all(isinstance(d, RoutingDecision) for d in decisions)
    assert {d.strategy for d in decisions} == {"dummy"} and all(d.expert in ("cheap", "dear") for d in decisions)
    assert not hasattr(RoutingDecision, "to_dict")  # one type end to end, no dict on the way


def test_queries_without_embeddings_are_embedded_in_one_call_per_batch():
    settings = RouterConfig(strategies={"dummy": {"seed": 0}}, default_strategy="dummy")
    embedder = FakeEmbeddingHandle()

    async def main():
        router = await _router(settings, embedder)
        texts = ["a", "bb", "ccc", "dddd"]
        return texts, await asyncio.gather(*(router.route(RouteQuery(text=t)) for t in texts))

    texts, answers = asyncio.run(main())
    assert embedder.batches == [texts]  # concurrent queries: one batch, one embedding call
    for text, answer in zip(texts, answers):
        np.testing.assert_array_equal(answer.embedding, np.full(4, len(text), np.float32))
        assert answer.decision.strategy == "dummy" and answer.embed_s > 0


def test_a_query_without_embedding_needs_an_embedding_deployment():
    settings = RouterConfig(strategies={"dummy": {"seed": 0}}, default_strategy="dummy")

    async def main():
        router = await _router(settings)
        await router.route(RouteQuery(text="x"))

    with pytest.raises(ValueError, match="no embedding deployment"):
        asyncio.run(main())


def test_direct_decision():
    d = RoutingDecision.direct("dear")
    assert dataclasses.asdict(d) == {
        "expert": "dear",
        "confidence": 1.0,
        "scores": {},
        "strategy": "direct",
        "policy_version": None,
        "fanout": ["dear"],
        "probs": None,
    }
    assert d.is_direct and not dataclasses.replace(d, strategy="dummy").is_direct


def test_settings_compute_todays_deployment_options():
    assert EmbeddingConfig().deployment_options() == {
        "name": "embedding",
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0.0},
        "max_ongoing_requests": 128,  # 4 x max_batch_size
    }
    assert RouterConfig().deployment_options() == {
        "name": "router",
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": 0.25, "num_gpus": 0.0},
        "max_ongoing_requests": 128,
    }
    assert RouterConfig(max_batch_size=16).deployment_options()["max_ongoing_requests"] == 64
    assert EmbeddingConfig(max_ongoing_requests=5).deployment_options()["max_ongoing_requests"] == 5
    with pytest.raises(ValueError, match="max_ongoing_requests"):
        RouterConfig(max_ongoing_requests=0)
