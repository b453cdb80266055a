"""Dispatch: from a prompt to expert answers. Embeds and routes (or takes the expert a request names), orders
the candidates, calls a top-k fan-out concurrently, fails over to the next-best expert, and streams with failover
until the first byte.

Everything it hands back is typed (serve_app.routed_request); turning it into HTTP is serve_app.responses' job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ray.serve.handle import DeploymentHandle

from experts.base import GenerationRequest, GenerationResult
from router_deployments.objectives import ObjectiveWeights, merge_weights
from router_deployments.router_deployment import RouteAnswer, RouteQuery, UnknownStrategyError
from router_deployments.strategies import RoutingDecision
from serve_app.api_models import RouterPreferences
from serve_app.config import ROUTER_MODEL, AppConfig
from serve_app.errors import APIError, bad_request, not_found, short_error, upstream_error
from serve_app.routed_request import ExpertAnswer, ExpertFailure, RoutedRequest

logger = logging.getLogger("routerllm.ingress")


@dataclass
class Generation:
    """The outcome of a non-streaming dispatch."""

    answer: ExpertAnswer
    """The answer returned to the client: the first of the fan-out (in decision order) that answered."""
    others: list[ExpertAnswer] = field(default_factory=list)
    """The rest of a fan-out that answered too (recorded for learning, not returned)."""
    failures: list[ExpertFailure] = field(default_factory=list)


@dataclass
class StreamDelta:
    """A piece of text from the expert now streaming; `first` on its first piece (failover ends there)."""

    expert: str
    text: str
    first: bool


@dataclass
class StreamEnd:
    """The stream is over. `expert` is None when no expert could answer (or one failed after its first piece);
    `answer` is None when the expert sent no totals."""

    expert: str | None
    answer: ExpertAnswer | None
    failures: list[ExpertFailure]


StreamEvent = StreamDelta | StreamEnd


def no_answer(failures: list[ExpertFailure]) -> APIError:
    """The 503 for a request no expert could answer, naming each failure."""
    return upstream_error("no expert could answer: " + "; ".join(f"{f.expert}: {f.error}" for f in failures))


class Dispatcher:
    """Holds the handles of the router and expert deployments and runs one request through them (the router
    deployment calls the embedding deployment)."""

    def __init__(
        self,
        config: AppConfig,
        router: DeploymentHandle,
        experts: dict[str, DeploymentHandle],
    ):
        self.server = config.server
        self.catalog = config.catalog
        self.default_weights = config.router.default_weights
        self.router = router
        self.experts = experts

    # --- routing --------------------------------------------------------------------------------------
    async def decide(
        self, request_id: str, started: float, model: str, text: str, prefs: RouterPreferences
    ) -> RoutedRequest:
        """Route `text` (model "router"), or take the expert the request names; unknown names are a 404."""
        if model != ROUTER_MODEL:
            return self._direct(request_id, started, model, prefs)
        t0 = time.perf_counter()
        weights = self._merged_weights(prefs)
        # No embedding: the router embeds each batch of queries in one call (router_deployment.py).
        query = RouteQuery(
            text=text,
            strategy=prefs.strategy,
            weights=weights.model_dump(),
            carbon_budget_left=prefs.carbon_budget_left,
        )
        try:
            answer: RouteAnswer = await self.router.route.remote(query)
        except UnknownStrategyError as e:
            raise bad_request(str(e.args[0]), param="router.strategy", code="unknown_strategy") from e
        t2 = time.perf_counter()
        return RoutedRequest(
            request_id=request_id,
            decision=answer.decision,
            embedding=answer.embedding,
            weights=weights,
            carbon_budget_left=prefs.carbon_budget_left,
            started=started,
            routed=t2,
            handle_timings={"embedding": answer.embed_s, "router": t2 - t0 - answer.embed_s},
        )

    def _direct(self, request_id: str, started: float, model: str, prefs: RouterPreferences) -> RoutedRequest:
        """A request that names its expert: the same decision type, made without embedding or routing."""
        if model not in self.experts:
            raise not_found(
                f"model {model!r} does not exist. Available models are {[ROUTER_MODEL, *self.experts]}",
                param="model",
                code="model_not_found",
            )
        return RoutedRequest(
            request_id=request_id,
            decision=RoutingDecision.direct(model),
            embedding=None,
            weights=self._merged_weights(prefs),
            carbon_budget_left=prefs.carbon_budget_left,
            started=started,
            routed=time.perf_counter(),
        )

    def _merged_weights(self, prefs: RouterPreferences) -> ObjectiveWeights:
        """The weights the request set over the router's defaults (objectives.merge_weights); the router
        deployment is sent the merged weights whole."""
        return merge_weights(self.default_weights, prefs.weights)

    def candidates(self, routed: RoutedRequest) -> list[str]:
        """The experts to try in order: the decision's fan-out, then (failover) the rest by score."""
        decision = routed.decision
        first = list(decision.fanout)
        if decision.is_direct or not self.server.failover:
            return first
        rest = sorted((n for n in self.catalog.names if n not in first), key=lambda n: -decision.scores.get(n, 0))
        return first + rest

    # --- generation -----------------------------------------------------------------------------------
    async def _call(self, expert: str, req: GenerationRequest) -> GenerationResult:
        return await asyncio.wait_for(self.experts[expert].generate.remote(req), self.server.request_timeout_s)

    async def generate(self, routed: RoutedRequest, req: GenerationRequest) -> Generation:
        """Call the fan-out concurrently and keep the highest-weighted answer; fail over one expert at a time
        while none has answered. Raises the 503 of `no_answer` when every candidate failed."""
        candidates = self.candidates(routed)
        k = len(routed.decision.fanout)
        outcomes = await asyncio.gather(*(self._call(e, req) for e in candidates[:k]), return_exceptions=True)
        tried = list(zip(candidates[:k], outcomes))
        for expert in candidates[k:]:
            if any(not isinstance(o, BaseException) for _, o in tried):
                break
            tried.append((expert, (await asyncio.gather(self._call(expert, req), return_exceptions=True))[0]))
        answers: list[ExpertAnswer] = []
        failures: list[ExpertFailure] = []
        for expert, outcome in tried:
            if isinstance(outcome, BaseException):
                logger.warning("expert %s failed for %s: %r", expert, req.request_id, outcome)
                failures.append(ExpertFailure(expert=expert, error=short_error(outcome)))
            else:
                answers.append(ExpertAnswer.of(expert, outcome, self.catalog))
        if not answers:
            raise no_answer(failures)
        return Generation(answer=answers[0], others=answers[1:], failures=failures)

    async def stream(self, routed: RoutedRequest, req: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """The first candidate that starts streaming answers; a failure before its first piece moves on to the
        next, a failure after it ends the stream (the client already has part of an answer)."""
        failures: list[ExpertFailure] = []
        for expert in self.candidates(routed):
            result, sent = None, False
            try:
                async for piece in self.experts[expert].options(stream=True).stream.remote(req):
                    yield StreamDelta(expert=expert, text=piece.delta, first=not sent)
                    sent = True
                    result = piece.result or result
            except Exception as e:  # noqa: BLE001 - reported to the client in the StreamEnd
                logger.warning("expert %s failed while streaming %s: %r", expert, req.request_id, e)
                failures.append(ExpertFailure(expert=expert, error=short_error(e)))
                if sent:
                    break
                continue
            answer = ExpertAnswer.of(expert, result, self.catalog) if result is not None else None
            yield StreamEnd(expert=expert, answer=answer, failures=failures)
            return
        yield StreamEnd(expert=None, answer=None, failures=failures)
