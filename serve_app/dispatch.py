"""Dispatch: from a prompt to expert answers. Embeds and routes (or takes the expert a request names), orders
the candidates, calls a top-k fan-out concurrently, fails over to the next-best expert, and streams with failover
until the first byte.

The rules of an expert call (serve_app.config.ServerConfig), after LiteLLM's retries and cooldowns, Envoy AI
Gateway's per-backend circuit breakers and vLLM Semantic Router's fallback rules:

- every attempt has a timeout (`request_timeout_s`: a whole answer, or a stream's first piece), and the whole
  chain one deadline (`request_deadline_s` from the request's arrival) that also bounds a stream to its end; a
  stream that stalls for `stream_idle_timeout_s` ends with an error event;
- only transient errors (timeouts, unreachable, 429, 5xx, a replica that died) are retried, `retries` times with
  doubling backoff; an auth or malformed-request refusal never is (experts.base.ExpertError.kind);
- failover moves to the next-best expert only before any byte is sent: a stream's answering expert is chosen by
  its first piece, before the response (and its `x-router-expert` header) starts;
- an expert whose circuit is open (serve_app.circuit_breaker, one set per ingress replica) is skipped at once.

Everything it hands back is typed (serve_app.routed_request); turning it into HTTP is serve_app.responses' job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ray.serve.handle import DeploymentHandle

from experts.base import GenerationRequest
from router_deployments.objectives import ObjectiveWeights, merge_weights
from router_deployments.router_deployment import RouteAnswer, RouteQuery, UnknownStrategyError
from router_deployments.strategies import RoutingDecision
from serve_app.api_models import RouterPreferences
from serve_app.budgets import BudgetView
from serve_app.config import ROUTER_MODEL, AppConfig
from serve_app.errors import APIError, bad_request, not_found, short_error, upstream_error
from serve_app.expert_calls import TRANSIENT_RAY_ERRORS, DeadlineExceededError, ExpertCaller
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
    """A piece of text from the expert now streaming; `first` on its first piece (failover ends there), which
    also carries the failures failed over from."""

    expert: str
    text: str
    first: bool
    failures: list[ExpertFailure] = field(default_factory=list)


@dataclass
class StreamEnd:
    """The stream is over. `expert` is None when no expert could answer; `error` is set when the answering
    expert failed or stalled after its first piece; `answer` is None when the expert sent no totals."""

    expert: str | None
    answer: ExpertAnswer | None
    failures: list[ExpertFailure]
    error: ExpertFailure | None = None


StreamEvent = StreamDelta | StreamEnd


def no_answer(failures: list[ExpertFailure]) -> APIError:
    """The 503 for a request no expert could answer, naming each failure (a 504 when the deadline ran out)."""
    message = "no expert could answer: " + "; ".join(f"{f.expert}: {f.error}" for f in failures)
    if failures and failures[-1].error.startswith(DeadlineExceededError.__name__):
        return APIError(504, message, "server_error", code="deadline_exceeded")
    return upstream_error(message)


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
        self.grid = config.carbon.grid()
        self.default_weights = config.router.default_weights
        self.router = router
        self.experts = experts
        self.calls = ExpertCaller(self.server, experts)

    # --- routing --------------------------------------------------------------------------------------
    async def decide(
        self,
        request_id: str,
        started: float,
        model: str,
        text: str,
        prefs: RouterPreferences,
        budget: BudgetView | None = None,
    ) -> RoutedRequest:
        """Route `text` (model "router"), or take the expert the request names; unknown names are a 404. `budget`:
        the server's budget state, which steers the weights and fills the strategy's budget features."""
        if model != ROUTER_MODEL:
            return self._direct(request_id, started, model, prefs, budget)
        t0 = time.perf_counter()
        deadline = self.calls.deadline(started)
        weights = self._merged_weights(prefs)
        fields = {"carbon_budget_left": prefs.carbon_budget_left}
        if budget is not None:
            weights, fields = budget.steered(weights), budget.route_fields()
        # No embedding: the router embeds each batch of queries in one call (router_deployment.py).
        query = RouteQuery(text=text, strategy=prefs.strategy, weights=weights.model_dump(), **fields)
        try:
            answer: RouteAnswer = await self._routing_call("router", lambda: self.router.route.remote(query), deadline)
        except UnknownStrategyError as e:
            raise bad_request(str(e.args[0]), param="router.strategy", code="unknown_strategy") from e
        t2 = time.perf_counter()
        return RoutedRequest(
            request_id=request_id,
            decision=answer.decision,
            embedding=answer.embedding,
            weights=weights,
            carbon_budget_left=fields["carbon_budget_left"],
            started=started,
            routed=t2,
            handle_timings={"embedding": answer.embed_s, "router": t2 - t0 - answer.embed_s},
            budget=budget,
        )

    async def _routing_call(self, part: str, call, deadline: float):
        """One embedding or router call, tried again once if its replica died or was busy (another replica, or
        the restarted one, takes it); a 503 naming the part when it cannot answer within the deadline."""
        for attempt in range(2):
            timeout = min(self.server.request_timeout_s, deadline - time.perf_counter())
            try:
                return await asyncio.wait_for(call(), max(timeout, 0.001))
            except (TimeoutError, asyncio.TimeoutError) as e:
                raise upstream_error(
                    f"the {part} deployment did not answer in {timeout:.3g} s", f"{part}_timeout"
                ) from e
            except TRANSIENT_RAY_ERRORS as e:
                logger.warning("%s call failed (attempt %d): %r", part, attempt + 1, e)
                if attempt == 1:
                    raise upstream_error(
                        f"the {part} deployment is unavailable: {short_error(e)}", f"{part}_unavailable"
                    ) from e
                await asyncio.sleep(min(self.server.retry_backoff_s, max(0.0, deadline - time.perf_counter())))
        raise AssertionError("unreachable")

    def _direct(
        self, request_id: str, started: float, model: str, prefs: RouterPreferences, budget: BudgetView | None
    ) -> RoutedRequest:
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
            carbon_budget_left=budget.carbon_left if budget else prefs.carbon_budget_left,
            started=started,
            routed=time.perf_counter(),
            budget=budget,
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
    async def _answer(self, expert: str, req: GenerationRequest, deadline: float) -> ExpertAnswer | ExpertFailure:
        """One expert's answer, or its failure (skipped while its circuit is open)."""
        try:
            result = await self.calls.generate(expert, req, deadline)
        except Exception as e:  # noqa: BLE001 - every failure is reported in routing.failover_from
            logger.warning("expert %s failed for %s: %r", expert, req.request_id, e)
            return ExpertFailure(expert=expert, error=short_error(e))
        return ExpertAnswer.of(expert, result, self.catalog, self.grid)

    async def generate(self, routed: RoutedRequest, req: GenerationRequest) -> Generation:
        """Call the fan-out concurrently and keep the highest-weighted answer; fail over one expert at a time
        while none has answered, within the request's deadline. Raises `no_answer` when every candidate failed."""
        candidates = self.candidates(routed)
        deadline = self.calls.deadline(routed.started)
        k = len(routed.decision.fanout)
        outcomes = list(await asyncio.gather(*(self._answer(e, req, deadline) for e in candidates[:k])))
        for expert in candidates[k:]:
            if any(isinstance(o, ExpertAnswer) for o in outcomes):
                break
            outcomes.append(await self._answer(expert, req, deadline))
        answers = [o for o in outcomes if isinstance(o, ExpertAnswer)]
        failures = [o for o in outcomes if isinstance(o, ExpertFailure)]
        if not answers:
            raise no_answer(failures)
        if failures:
            logger.info("%s answered by %s after failing over from %s", req.request_id, answers[0].expert, failures)
        return Generation(answer=answers[0], others=answers[1:], failures=failures)

    async def stream(self, routed: RoutedRequest, req: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """The first candidate whose stream yields a first piece answers (the ingress reads that piece before the
        response starts, so its headers name the expert that answers); a failure before it moves on to the next,
        a failure or a stall after it ends the stream with an error. The whole stream ends by the deadline."""
        failures: list[ExpertFailure] = []
        deadline = self.calls.deadline(routed.started)
        for expert in self.candidates(routed):
            try:
                stream, piece = await self.calls.open_stream(expert, req, deadline)
            except Exception as e:  # noqa: BLE001 - reported to the client with the answer or the 503
                logger.warning("expert %s failed to start streaming %s: %r", expert, req.request_id, e)
                failures.append(ExpertFailure(expert=expert, error=short_error(e)))
                if isinstance(e, DeadlineExceededError):
                    break
                continue
            yield StreamDelta(expert=expert, text=piece.delta, first=True, failures=list(failures))
            async for event in self._rest_of_stream(expert, stream, piece, req, deadline, failures):
                yield event
            return
        yield StreamEnd(expert=None, answer=None, failures=failures)

    async def _rest_of_stream(self, expert, stream, piece, req, deadline, failures) -> AsyncIterator[StreamEvent]:
        """Relay the started stream to its end, its stall or its deadline."""
        result = piece.result
        while True:
            try:
                piece = await self.calls.next_piece(stream, deadline)
            except Exception as e:  # noqa: BLE001 - the client already has part of an answer: an error event
                logger.warning("expert %s failed while streaming %s: %r", expert, req.request_id, e)
                self.calls.verdict(expert, e)
                error = ExpertFailure(expert=expert, error=short_error(e))
                yield StreamEnd(expert=expert, answer=None, failures=failures, error=error)
                return
            if piece is None:
                break
            yield StreamDelta(expert=expert, text=piece.delta, first=False)
            result = piece.result or result
        answer = ExpertAnswer.of(expert, result, self.catalog, self.grid) if result is not None else None
        yield StreamEnd(expert=expert, answer=answer, failures=failures)
