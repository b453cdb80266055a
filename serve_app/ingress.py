"""The HTTP face of the graph: an OpenAI-compatible API that embeds, routes and calls experts.

The endpoints only: reading a request is serve_app.request_parsing, embedding, routing and calling experts
serve_app.dispatch, what goes back serve_app.responses, and what the learner is told serve_app.outcome_recording.

No `from __future__ import annotations`: FastAPI must see real annotation objects on the class-based view.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from experts.base import GenerationRequest
from serve_app.api_models import ChatCompletionRequest, FeedbackRequest, RollbackRequest, RouteRequest, UnpinRequest
from serve_app.auth import Gate, KeyRing, refuse_open_exposure
from serve_app.budgets import BudgetGate, caller_of
from serve_app.carbon_report import build_report, gather_expert_stats
from serve_app.config import ROUTER_MODEL, AppConfig
from serve_app.console import console_file, router_summary
from serve_app.dispatch import Dispatcher, StreamDelta, StreamEnd, StreamEvent, no_answer
from serve_app.errors import APIError, bad_request, cause_message, not_found, short_error, upstream_error
from serve_app.outcome_recording import FEEDBACK_UNSURE, ROLLBACK_UNSURE, OutcomeRecorder
from serve_app.rate_limits import RateLimits
from serve_app.request_metrics import RequestMetrics
from serve_app.request_parsing import check_generation, check_size, generation_request, parse_body
from serve_app.responses import (
    DONE,
    RouteMetadata,
    RoutingMetadata,
    chat_completion,
    chunk_event,
    error_event,
    usage,
)
from serve_app.routed_request import ExpertAnswer, ExpertFailure, RoutedRequest
from training.online.outcome_store import DuplicateFeedbackError, InvalidScoreError, UnknownRequestError, outcome_id

logger = logging.getLogger("routerllm.ingress")

app = FastAPI(title="RouterLLM", description="OpenAI-compatible LLM router on Ray Serve.")


@app.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return exc.response()


# Decorated here, not in the builder: the class-based view must be built at import time in every replica.
@serve.ingress(app)
class Ingress:
    """Orchestrates one request: embed the prompt, ask the router, call the chosen expert(s), report."""

    async def __init__(
        self,
        config: AppConfig,
        *,
        router: DeploymentHandle,
        experts: dict[str, DeploymentHandle],
        keys: KeyRing | None = None,
    ):
        keys = keys or KeyRing()
        if keys.open:
            refuse_open_exposure()
        self.gate = Gate(keys)  # every endpoint but /healthz and /ui passes it first (serve_app/auth.py)
        (logger.warning if keys.open else logger.info)("ingress: %s", keys.describe())
        self.limits = RateLimits(config.limits, keyed=not keys.open)
        await self.limits.wait_until_ready()
        self.config = config
        self.catalog = config.catalog
        self.dispatch = Dispatcher(config, router, experts)
        self.experts = experts
        self.recorder = OutcomeRecorder(config.learner, self.catalog)
        # The graph is not ready before its learner: otherwise /v1/learner/status answers 503 and every chat waits
        # out the record timeout while the actor waits for a CPU.
        await self.recorder.wait_until_ready(config)
        self.metrics = RequestMetrics()
        self.budgets = BudgetGate(config)
        await self.budgets.start()

    async def _report(
        self,
        routed: RoutedRequest,
        expert: str,
        answers: list[ExpertAnswer],
        failures: list[ExpertFailure],
        done: float,
    ) -> RoutingMetadata:
        """Record the answered calls (the first is the one returned), then the metadata, then the metrics."""
        extra = {}
        if answers:
            await self.budgets.settle(routed, answers)
            self.limits.charge_tokens(routed.caller, sum(a.result.tokens_in + a.result.tokens_out for a in answers))
            recording = time.perf_counter()
            extra["feedback"] = await self.recorder.record(routed, answers)
            routed.record_s = time.perf_counter() - recording
        if len(answers) > 1:
            others = enumerate(answers[1:], start=1)
            extra["fanout_outcomes"] = {a.expert: outcome_id(routed.request_id, a.expert, rank) for rank, a in others}
        routing = RoutingMetadata.of(routed, expert, answers[0] if answers else None, failures, done, **extra)
        self.metrics.answered(routing)
        return routing

    # --- chat -----------------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        """OpenAI chat completions: model "router" routes, an expert's name calls it directly."""
        start = time.perf_counter()
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        caller = self.gate.user(request)
        await self.limits.admit_request(caller)
        body = await parse_body(request, ChatCompletionRequest, self.config.server)
        text = body.routing_text()
        check_size(text, len(body.messages), self.config.server)
        check_generation(body, self.config.server)
        budget = await self.budgets.view(caller_of(body, caller.id), body.router.carbon_budget_left)
        routed = await self.dispatch.decide(request_id, start, body.model, text, body.router, budget)
        routed.caller = caller.id
        req = generation_request(body, request_id)
        await self.budgets.admit(routed, self.dispatch.candidates(routed), len(text), req.max_tokens)
        try:
            if body.stream:
                return await self._stream(body, routed, req)
            generation = await self.dispatch.generate(routed, req)
        except BaseException:
            self.budgets.release(routed)
            raise
        done = time.perf_counter()
        answers = [generation.answer, *generation.others]
        routing = await self._report(routed, generation.answer.expert, answers, generation.failures, done)
        return JSONResponse(chat_completion(routing, generation.answer), headers=routing.headers())

    async def _stream(self, body: ChatCompletionRequest, routed: RoutedRequest, req: GenerationRequest):
        """A streamed answer. Its first piece is awaited before the response starts: failover happens before any
        byte is sent, the headers name the expert that answers, and no expert answering is a plain 503."""
        events = self.dispatch.stream(routed, req)
        first = await anext(events)
        if isinstance(first, StreamEnd):
            raise no_answer(first.failures)
        head = RoutingMetadata.of(routed, first.expert, failures=first.failures)
        return StreamingResponse(
            self._events(body, routed, first, events), media_type="text/event-stream", headers=head.headers()
        )

    async def _events(
        self,
        body: ChatCompletionRequest,
        routed: RoutedRequest,
        first: StreamDelta,
        events: AsyncIterator[StreamEvent],
    ) -> AsyncIterator[str]:
        """Server-sent events of a streamed answer; the last chunk carries the routing metadata, or an error
        event ends it when the expert failed or stalled after its first piece."""
        created = int(time.time())
        yield chunk_event(routed.request_id, created, first.expert, {"role": "assistant", "content": ""})
        if first.text:
            yield chunk_event(routed.request_id, created, first.expert, {"content": first.text})
        try:
            async for chunk in self._rest_of_events(body, routed, created, events):
                yield chunk
        finally:
            await events.aclose()  # a client that hung up cancels the expert's stream too
            self.budgets.release(routed)  # a failed stream or a client that left (a no-op once settled)

    async def _rest_of_events(
        self, body: ChatCompletionRequest, routed: RoutedRequest, created: int, events: AsyncIterator[StreamEvent]
    ) -> AsyncIterator[str]:
        async for event in events:
            if isinstance(event, StreamDelta):
                if event.text:
                    yield chunk_event(routed.request_id, created, event.expert, {"content": event.text})
                continue
            if event.error is not None:
                failure = event.error
                yield error_event(upstream_error(f"{failure.expert} failed mid-stream: {failure.error}"))
            else:
                answers = [event.answer] if event.answer is not None else []
                routing = await self._report(routed, event.expert, answers, event.failures, time.perf_counter())
                extra = {"routing": routing.body()}
                if body.stream_options and body.stream_options.include_usage and event.answer is not None:
                    extra["usage"] = usage(event.answer.result)
                finish = event.answer.result.finish_reason if event.answer else "stop"
                yield chunk_event(routed.request_id, created, event.expert, {}, finish, **extra)
            yield DONE

    @app.post("/v1/route")
    async def route(self, request: Request):
        """The routing decision alone, for a chat body or a bare prompt; nothing is generated."""
        start = time.perf_counter()
        request_id = f"route-{uuid.uuid4().hex}"
        caller = self.gate.user(request)
        await self.limits.admit_request(caller)
        body = await parse_body(request, RouteRequest, self.config.server)
        try:
            text = body.routing_text()
        except ValueError as e:
            raise bad_request(str(e), param="messages") from e
        check_size(text, len(body.messages or []), self.config.server)
        budget = await self.budgets.view(caller_of(body, caller.id), body.router.carbon_budget_left)
        routed = await self.dispatch.decide(request_id, start, body.model, text, body.router, budget)
        routing = RouteMetadata.of(routed, routed.decision.expert, probs=routed.decision.probs)
        return JSONResponse({"routing": routing.body()}, headers=routing.headers())

    # --- online learning ------------------------------------------------------------------------------
    @app.post("/v1/feedback")
    async def feedback(self, request: Request):
        """A quality score in [0, 1] for a request the same key made; acknowledged only once it is on disk."""
        caller = self.gate.user(request)
        learner = self.recorder.require_learner()
        await self.limits.admit_feedback(caller)
        body = await parse_body(request, FeedbackRequest, self.config.server)
        try:
            await self.recorder.ask(
                learner.record_feedback.remote(body.request_id, body.score, caller.id), FEEDBACK_UNSURE
            )
        # The learner's error reaches here wrapped by Ray, whose text is a traceback with pids and addresses: answer
        # with the store's own message only.
        except UnknownRequestError as e:
            raise not_found(cause_message(e), param="request_id", code="unknown_request") from e
        except DuplicateFeedbackError as e:
            raise APIError(409, cause_message(e), param="request_id", code="duplicate_feedback") from e
        except InvalidScoreError as e:
            raise APIError(422, cause_message(e), param="score", code="invalid_score") from e
        return {"request_id": body.request_id, "score": body.score, "recorded": True}

    @app.post("/admin/rollback")
    async def rollback(self, request: Request):
        """Make the previously published version of a learned strategy live again on every replica, pinned there
        until POST /admin/unpin."""
        self.gate.admin(request)
        learner = self.recorder.require_learner()
        body = await parse_body(request, RollbackRequest, self.config.server)
        self._check_learned(body.strategy)
        try:
            version = await self.recorder.ask(learner.rollback.remote(body.strategy), ROLLBACK_UNSURE)
        except (ValueError, KeyError) as e:
            raise APIError(
                409, f"cannot roll back {body.strategy}: {short_error(e)}", code="no_previous_version"
            ) from e
        return {"strategy": body.strategy, "live_version": version, "pinned": version}

    @app.post("/admin/unpin")
    async def unpin(self, request: Request):
        """Let a rolled-back strategy's publishes go live again (the next publish does)."""
        self.gate.admin(request)
        learner = self.recorder.require_learner()
        body = await parse_body(request, UnpinRequest, self.config.server)
        self._check_learned(body.strategy)
        was = await self.recorder.ask(learner.unpin.remote(body.strategy))
        return {"strategy": body.strategy, "unpinned": was, "pinned": None}

    def _check_learned(self, strategy: str) -> None:
        learned = self.config.learner.training.strategies
        if strategy not in learned:
            message = f"strategy {strategy!r} is not learned online; learned: {sorted(learned)}"
            raise not_found(message, param="strategy")

    @app.get("/v1/learner/status")
    async def learner_status(self, request: Request):
        """What the learner is doing: versions (and a rollback's pin), updates, publishes, epsilon, loss, rewards."""
        self.gate.user(request)
        return await self.recorder.ask(self.recorder.require_learner().status.remote())

    # --- catalog and health ---------------------------------------------------------------------------
    @app.get("/v1/models")
    async def models(self, request: Request):
        """'router' plus every expert, OpenAI's model list with each expert's backend and model."""
        self.gate.user(request)
        created = int(time.time())
        data = [{"id": ROUTER_MODEL, "object": "model", "created": created, "owned_by": "routerllm"}]
        for spec in self.catalog.experts:
            data.append(
                {
                    "id": spec.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "routerllm",
                    "backend": spec.backend.kind,
                    "model": spec.backend.model,
                }
            )
        return {"object": "list", "data": data}

    @app.get("/v1/experts")
    async def expert_stats(self, request: Request):
        """The catalog with each expert's served calls, tokens and measured energy (one replica each); backends
        (URLs, key variables, model paths) for an admin key only."""
        hidden = None if self.gate.user(request).admin else {"backend"}
        stats = await asyncio.gather(*(h.stats.remote() for h in self.experts.values()), return_exceptions=True)
        out = []
        for spec, s in zip(self.catalog.experts, stats):
            entry = spec.model_dump(mode="json", exclude=hidden)
            entry["stats"] = {"error": short_error(s)} if isinstance(s, BaseException) else s
            entry["circuit"] = self.dispatch.calls.snapshot(spec.name)
            out.append(entry)
        return {"experts": out}

    # --- carbon -----------------------------------------------------------------------------------------
    @app.get("/v1/carbon/report")
    async def carbon_report(self, request: Request, window_s: float | None = None):
        """Emissions, savings, budget state, measured against modelled energy and recommendations, for the last
        `window_s` seconds (default: the budget window) and in total, from the outcome store."""
        self.gate.user(request)
        window = self.config.budgets.window_s if window_s is None else window_s
        if not window > 0:
            raise bad_request(f"window_s must be a positive number of seconds, got {window_s}", param="window_s")
        learner, now = self.recorder.require_learner(), time.time()
        in_window = await self.recorder.ask(learner.carbon_summary.remote(now - window, None))
        in_total = await self.recorder.ask(learner.carbon_summary.remote(None, None))
        budget = (await self.budgets.view(None)).state
        stats = await gather_expert_stats(self.catalog, self.experts)
        return build_report(self.catalog, window, in_window, in_total, budget, stats, now)

    @app.get("/v1/carbon/outcomes")
    async def carbon_outcomes(self, request: Request, after: int = 0, limit: int = 500):
        """One page of the outcome log (no embeddings), oldest first: `next_after` is the next page's `after`."""
        self.gate.user(request)
        if not 1 <= limit <= 5000 or after < 0:
            raise bad_request("limit must be in [1, 5000] and after >= 0", param="limit")
        page = await self.recorder.ask(self.recorder.require_learner().outcome_page.remote(after, limit))
        return {"outcomes": page, "next_after": page[-1]["id"] if len(page) == limit else None}

    @app.get("/healthz")
    async def healthz(self):
        """Liveness, with the experts, each one's circuit in this ingress replica (status "degraded" while one is
        not closed) and the default strategy this graph serves."""
        circuits = self.dispatch.calls.states()
        status = "ok" if all(state == "closed" for state in circuits.values()) else "degraded"
        return {
            "status": status,
            "experts": self.catalog.names,
            "circuits": circuits,
            "default_strategy": self.config.router.default_strategy,
        }

    @app.get("/v1/router")
    async def router_settings(self, request: Request):
        """The enabled strategies, which learn online, the default strategy and weights, the grid intensity."""
        self.gate.user(request)
        return router_summary(self.config)

    # --- console --------------------------------------------------------------------------------------
    @app.get("/ui")
    async def console(self):
        """The browser console: chat, routing controls, feedback and live panels (serve_app/console_ui)."""
        return console_file("index.html")

    @app.get("/ui/{name}")
    async def console_asset(self, name: str):
        """The console's scripts and style sheet."""
        return console_file(name)
