"""Stand-ins for the deployment handles the ingress holds, speaking the same `.remote()` / `.options()` calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from experts.base import GenerationResult, StreamChunk
from experts.catalog import ExpertCatalog
from router_deployments.objectives import ObjectiveWeights
from router_deployments.router_deployment import RouteAnswer
from router_deployments.strategies import RoutingDecision
from serve_app.routed_request import RoutedRequest


def catalog(*names: str) -> ExpertCatalog:
    """Experts with made-up prices; replay backends, never started."""
    return ExpertCatalog(
        experts=[
            dict(
                name=n,
                backend={"kind": "replay", "data": "unused.csv", "model": n},
                params_b=1,
                price_in_per_1k=0.001 * (i + 1),
                price_out_per_1k=0.002 * (i + 1),
                energy_per_token_j=1.0,
                expected_latency_s=1,
                quality_prior=0.5,
            )
            for i, n in enumerate(names or ("a", "b", "c"))
        ]
    )


def decision(**kw) -> RoutingDecision:
    fields = dict(
        expert="a",
        confidence=0.123456789,
        scores={"a": 0.9, "b": 0.2, "c": 0.5},
        strategy="moe",
        policy_version=3,
        fanout=["a"],
        probs=[0.6, 0.1, 0.3],
    )
    return RoutingDecision(**{**fields, **kw})


def routed(dec: RoutingDecision | None = None, **kw) -> RoutedRequest:
    """A routed request that arrived at t=10 s, was routed at 10.25 s after 0.1 s embedding and 0.05 s routing."""
    fields = dict(
        request_id="chatcmpl-1",
        decision=dec or decision(),
        embedding=np.ones(4, np.float32),
        weights=ObjectiveWeights(quality=1.0, cost=0.2),
        carbon_budget_left=0.5,
        started=10.0,
        routed=10.25,
        handle_timings={"embedding": 0.1, "router": 0.05},
    )
    return RoutedRequest(**{**fields, **kw})


def result(text: str = "hi", **kw) -> GenerationResult:
    return GenerationResult(**{"text": text, "tokens_in": 10, "tokens_out": 20, "latency_s": 0.5, **kw})


class Method:
    """`handle.method.remote(...)`: calls `fn` and hands back what it returns (a coroutine, an async iterator)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.calls: list[tuple] = []

    def remote(self, *args):
        self.calls.append(args)
        return self.fn(*args)


class FakeStream:
    """What `handle.options(stream=True).method.remote()` returns: an async iterator that can be cancelled."""

    def __init__(self, pieces):
        self.pieces = pieces
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.pieces.__anext__()

    def cancel(self) -> None:
        self.cancelled = True


class FakeExpert:
    """An expert handle that answers `text`, or raises `error` (after `pieces_before_error` streamed pieces);
    `errors` fail the first calls one by one before it answers, `stall_s` sleeps before each piece after the first
    (and before a whole answer)."""

    def __init__(
        self,
        text: str = "hello",
        error: Exception | None = None,
        pieces_before_error: int = 0,
        errors: list[Exception] | None = None,
        stall_s: float = 0.0,
    ):
        self.text, self.error, self.pieces_before_error = text, error, pieces_before_error
        self.errors = list(errors or [])
        self.stall_s = stall_s
        self.generate = Method(self._generate)
        self.stream = Method(lambda req: FakeStream(self._stream(req)))
        self.streams: list[FakeStream] = []

    def options(self, **_):
        return self

    async def _generate(self, req):
        await asyncio.sleep(self.stall_s)
        if self.errors:
            raise self.errors.pop(0)
        if self.error:
            raise self.error
        return result(self.text)

    async def _stream(self, req):
        if self.errors:
            raise self.errors.pop(0)
        for i, word in enumerate(self.text.split()):
            if self.error and i == self.pieces_before_error:
                raise self.error
            if i:
                await asyncio.sleep(self.stall_s)
            yield StreamChunk(delta=word)
        if self.error:
            raise self.error
        yield StreamChunk(delta="", result=result(self.text))


class FakeRouter:
    """Answers every query with `dec` made on a constant embedding (0.01 s of it embedding), or raises `error`."""

    def __init__(self, dec: RoutingDecision | None = None, error: Exception | None = None):
        self.dec, self.error = dec or decision(), error
        self.route = Method(self._route)

    async def _route(self, query):
        if self.error:
            raise self.error
        return RouteAnswer(decision=self.dec, embedding=np.full(4, 0.5, np.float32), embed_s=0.01)
