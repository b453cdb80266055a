"""The HTTP face of the graph: an OpenAI-compatible API that embeds, routes and calls experts.

No `from __future__ import annotations`: FastAPI must see real annotation objects on the class-based view.
"""

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from experts.base import GenerationRequest, GenerationResult
from router_deployments.router_deployment import RouteQuery, UnknownStrategyError
from serve_app.api_models import (
    ChatCompletionRequest,
    FeedbackRequest,
    RollbackRequest,
    RouteRequest,
    RouterPreferences,
)
from serve_app.config import AppConfig
from serve_app.errors import APIError, bad_request, not_found, upstream_error
from serve_app.request_metrics import RequestMetrics
from training.online.learner_actor import get_or_create_learner
from training.online.outcome_store import DuplicateFeedbackError, InvalidScoreError, UnknownRequestError

logger = logging.getLogger("routerllm.ingress")

ROUTER_MODEL = "router"

app = FastAPI(title="RouterLLM", description="OpenAI-compatible LLM router on Ray Serve.")


@app.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return exc.response()


def _validation_message(e: ValidationError) -> tuple[str, str | None]:
    first = e.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    return f"{param}: {first.get('msg')}" if param else str(first.get("msg")), param


def _short(e: BaseException) -> str:
    """One line for a failure; a remote error is reported by its cause, not Ray's wrapper and traceback."""
    e = getattr(e, "cause", None) or e
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 500 else text[:500] + "..."


# Decorated here, not in the builder: the class-based view must be built at import time in every replica.
@serve.ingress(app)
class Ingress:
    """Orchestrates one request: embed the prompt, ask the router, call the chosen expert(s), report."""

    def __init__(
        self,
        config: dict,
        embedder: DeploymentHandle,
        router: DeploymentHandle,
        experts: dict[str, DeploymentHandle],
    ):
        self.config = AppConfig.model_validate(config)
        self.catalog = self.config.catalog
        self.embedder = embedder
        self.router = router
        self.experts = experts
        self.metrics = RequestMetrics()
        self.learner = None
        if self.config.learner is not None:
            ls = self.config.learner
            self.learner = get_or_create_learner(
                ls.training, self.catalog, namespace=ls.namespace, name=ls.actor_name, num_cpus=ls.num_cpus
            )

    # --- request parsing ------------------------------------------------------------------------------
    async def _parse(self, request: Request, model: type[BaseModel]) -> Any:
        raw = await request.body()
        # Refuse absurd bodies before parsing them: 4 bytes per allowed character plus room for the envelope.
        if len(raw) > 4 * self.config.server.max_prompt_chars + 65536:
            raise APIError(413, "request body too large", code="request_too_large")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad_request(f"request body is not valid JSON: {e}", code="invalid_json") from e
        if not isinstance(data, dict):
            raise bad_request("request body must be a JSON object", code="invalid_json")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            message, param = _validation_message(e)
            raise bad_request(message, param=param, code="invalid_value") from e

    def _check_size(self, text: str, n_messages: int = 1) -> None:
        limits = self.config.server
        if len(text) > limits.max_prompt_chars:
            raise bad_request(
                f"prompt has {len(text)} characters; this deployment accepts at most {limits.max_prompt_chars}",
                param="messages",
                code="context_length_exceeded",
            )
        if n_messages > limits.max_messages:
            raise bad_request(f"at most {limits.max_messages} messages per request", param="messages")

    # --- routing --------------------------------------------------------------------------------------
    async def _decide(self, model: str, text: str, prefs: RouterPreferences) -> dict:
        if model != ROUTER_MODEL:
            if model not in self.experts:
                raise not_found(
                    f"model {model!r} does not exist. Available models are {[ROUTER_MODEL, *self.experts]}",
                    param="model",
                    code="model_not_found",
                )
            return {
                "embedding": None,
                "expert": model,
                "confidence": 1.0,
                "scores": {},
                "strategy": "direct",
                "policy_version": None,
                "fanout": [model],
                "probs": None,
            }
        t0 = time.perf_counter()
        embedding = await self.embedder.embed.remote(text)
        t1 = time.perf_counter()
        query = RouteQuery(
            text=text,
            embedding=embedding,
            strategy=prefs.strategy,
            weights=prefs.weights.model_dump() if prefs.weights else None,
            carbon_budget_left=prefs.carbon_budget_left,
        )
        try:
            decision = await self.router.route.remote(query)
        except UnknownStrategyError as e:
            raise bad_request(str(e.args[0]), param="router.strategy", code="unknown_strategy") from e
        t2 = time.perf_counter()
        weights = {**self.config.router.default_weights.model_dump(), **(query.weights or {})}
        return {
            **decision,
            "embedding": embedding,
            "weights": weights,
            "budget": prefs.carbon_budget_left,
            "timings": {"embedding": t1 - t0, "router": t2 - t1},
        }

    def _candidates(self, decision: dict) -> list[str]:
        """The experts to try in order: the decision's fan-out, then (failover) the rest by score."""
        first = list(decision["fanout"])
        if decision["strategy"] == "direct" or not self.config.server.failover:
            return first
        rest = sorted((n for n in self.catalog.names if n not in first), key=lambda n: -decision["scores"].get(n, 0))
        return first + rest

    # --- expert calls ---------------------------------------------------------------------------------
    async def _call(self, expert: str, req: GenerationRequest) -> GenerationResult:
        timeout = self.config.server.request_timeout_s
        return await asyncio.wait_for(self.experts[expert].generate.remote(req), timeout)

    async def _generate(self, decision: dict, req: GenerationRequest) -> tuple[str, GenerationResult, list]:
        """Call the fan-out concurrently and keep the highest-weighted answer; fail over if all fail."""
        candidates = self._candidates(decision)
        k = len(decision["fanout"])
        failures: list[dict] = []
        outcomes = await asyncio.gather(*(self._call(e, req) for e in candidates[:k]), return_exceptions=True)
        tried = list(zip(candidates[:k], outcomes))
        for expert in candidates[k:]:
            if any(not isinstance(o, BaseException) for _, o in tried):
                break
            tried.append((expert, (await asyncio.gather(self._call(expert, req), return_exceptions=True))[0]))
        chosen = None
        for expert, outcome in tried:
            if isinstance(outcome, BaseException):
                logger.warning("expert %s failed for %s: %r", expert, req.request_id, outcome)
                failures.append({"expert": expert, "error": _short(outcome)})
            elif chosen is None:
                chosen = (expert, outcome)
        if chosen is None:
            raise upstream_error(
                "no expert could answer: " + "; ".join(f"{f['expert']}: {f['error']}" for f in failures)
            )
        answered = [(e, o) for e, o in tried if not isinstance(o, BaseException) and e != chosen[0]]
        return chosen[0], chosen[1], failures, answered

    async def _record(self, request_id: str, decision: dict, answers: list[tuple[str, GenerationResult]]) -> str | None:
        """Log every answered expert call (all k of a fan-out; the first is the one returned) with its routing
        context in the learner's durable store, before the client is answered. Returns a reason when the
        outcomes could not be recorded (feedback for this request will then be refused), else None."""
        if self.learner is None or decision["embedding"] is None:
            return "online learning is not enabled" if self.learner is None else "direct requests are not learned"
        records = []
        for rank, (expert, result) in enumerate(answers):
            records.append(
                {
                    "request_id": request_id if rank == 0 else f"{request_id}:{expert}",
                    "group_id": request_id,
                    "fanout_rank": rank,
                    "strategy": decision["strategy"],
                    "expert": expert,
                    "embedding": [float(x) for x in decision["embedding"]],
                    "policy_version": decision["policy_version"],
                    "probs": decision.get("probs"),
                    "carbon_budget_left": decision["budget"],
                    "weights": decision["weights"],
                    "latency_s": result.latency_s,
                    "tokens_in": result.tokens_in,
                    "tokens_out": result.tokens_out,
                    "cost_usd": float(self._cost(expert, result)),
                    "carbon_g": self.catalog.carbon_g(expert, result.tokens_in, result.tokens_out),
                }
            )
        try:
            ref = self.learner.record_outcomes.remote(records)
            await asyncio.wait_for(ref, self.config.learner.record_timeout_s)
        except Exception as e:  # noqa: BLE001 - the answer still goes out; its feedback will be refused
            logger.warning("could not record outcomes of %s: %r", request_id, e)
            return f"learner unavailable: {_short(e)}"
        return None

    def _cost(self, expert: str, result: GenerationResult) -> float:
        return result.extra.get("cost_usd", self.catalog.cost_usd(expert, result.tokens_in, result.tokens_out))

    # --- responses ------------------------------------------------------------------------------------
    def _routing(
        self,
        request_id: str,
        decision: dict,
        expert: str,
        result: GenerationResult | None,
        timings: dict[str, float],
        failures: list[dict],
    ) -> dict:
        info = {
            "request_id": request_id,
            "strategy": decision["strategy"],
            "expert": expert,
            "confidence": round(float(decision["confidence"]), 6),
            "policy_version": decision["policy_version"],
            "scores": decision["scores"],
            "fanout": decision["fanout"],
            "latency_ms": {k: round(v * 1000, 3) for k, v in {**decision.get("timings", {}), **timings}.items()},
        }
        if failures:
            info["failover_from"] = failures
        if result is not None:
            info.update(
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                cost_usd=float(self._cost(expert, result)),
                carbon_g=self.catalog.carbon_g(expert, result.tokens_in, result.tokens_out),
            )
        return info

    @staticmethod
    def _headers(routing: dict) -> dict[str, str]:
        headers = {
            "x-router-request-id": routing["request_id"],
            "x-router-strategy": routing["strategy"],
            "x-router-expert": routing["expert"],
            "x-router-confidence": f"{routing['confidence']:.6f}",
            "x-router-policy-version": str(routing["policy_version"]),
        }
        for key in ("tokens_in", "tokens_out", "cost_usd", "carbon_g"):
            if key in routing:
                headers[f"x-router-{key.replace('_', '-')}"] = str(routing[key])
        if "total" in routing["latency_ms"]:
            headers["x-router-latency-ms"] = str(routing["latency_ms"]["total"])
        elif "routing" in routing["latency_ms"]:
            headers["x-router-latency-ms"] = str(routing["latency_ms"]["routing"])
        return headers

    @staticmethod
    def _generation_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
        return GenerationRequest(
            messages=body.plain_messages(),
            max_tokens=body.max_completion_tokens or body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_list(),
            seed=body.seed,
            request_id=request_id,
        )

    # --- endpoints ------------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        start = time.perf_counter()
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        body: ChatCompletionRequest = await self._parse(request, ChatCompletionRequest)
        text = body.routing_text()
        self._check_size(text, len(body.messages))
        decision = await self._decide(body.model, text, body.router)
        routed = time.perf_counter()
        req = self._generation_request(body, request_id)
        if body.stream:
            return await self._stream(body, decision, req, request_id, start, routed)
        expert, result, failures, others = await self._generate(decision, req)
        done = time.perf_counter()
        timings = {"routing": routed - start, "expert": done - routed, "total": done - start}
        routing = self._routing(request_id, decision, expert, result, timings, failures)
        not_recorded = await self._record(request_id, decision, [(expert, result), *others])
        routing["feedback"] = "accepted" if not_recorded is None else f"unavailable: {not_recorded}"
        if others:
            routing["fanout_outcomes"] = {e: f"{request_id}:{e}" for e, _ in others}
        self.metrics.answered(routing)
        payload = {
            "id": request_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": expert,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": result.tokens_in,
                "completion_tokens": result.tokens_out,
                "total_tokens": result.tokens_in + result.tokens_out,
            },
            "routing": routing,
        }
        return JSONResponse(payload, headers=self._headers(routing))

    async def _stream(self, body, decision, req, request_id, start, routed) -> StreamingResponse:
        """Server-sent events; the first expert to start streaming answers, failing over before any token."""
        candidates = self._candidates(decision)
        head = self._routing(request_id, decision, candidates[0], None, {"routing": routed - start}, [])
        created = int(time.time())

        def event(model: str, delta: dict, finish: str | None = None, **extra) -> str:
            chunk = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(chunk)}\n\n"

        async def events():
            failures: list[dict] = []
            for expert in candidates:
                result, sent = None, False
                try:
                    gen = self.experts[expert].options(stream=True).stream.remote(req)
                    async for piece in gen:
                        if not sent:
                            yield event(expert, {"role": "assistant", "content": ""})
                            sent = True
                        if piece.delta:
                            yield event(expert, {"content": piece.delta})
                        result = piece.result or result
                except Exception as e:  # noqa: BLE001 - reported to the client below
                    logger.warning("expert %s failed while streaming %s: %r", expert, request_id, e)
                    failures.append({"expert": expert, "error": _short(e)})
                    if sent:
                        break
                    continue
                done = time.perf_counter()
                timings = {"routing": routed - start, "expert": done - routed, "total": done - start}
                routing = self._routing(request_id, decision, expert, result, timings, failures)
                if result is not None:
                    not_recorded = await self._record(request_id, decision, [(expert, result)])
                    routing["feedback"] = "accepted" if not_recorded is None else f"unavailable: {not_recorded}"
                self.metrics.answered(routing)
                extra: dict[str, Any] = {"routing": routing}
                if body.stream_options and body.stream_options.include_usage and result is not None:
                    extra["usage"] = {
                        "prompt_tokens": result.tokens_in,
                        "completion_tokens": result.tokens_out,
                        "total_tokens": result.tokens_in + result.tokens_out,
                    }
                yield event(expert, {}, result.finish_reason if result else "stop", **extra)
                yield "data: [DONE]\n\n"
                return
            err = upstream_error(
                "no expert could answer: " + "; ".join(f"{f['expert']}: {f['error']}" for f in failures)
            )
            yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.type, 'code': err.code}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=self._headers(head))

    @app.post("/v1/route")
    async def route(self, request: Request):
        start = time.perf_counter()
        request_id = f"route-{uuid.uuid4().hex}"
        body: RouteRequest = await self._parse(request, RouteRequest)
        try:
            text = body.routing_text()
        except ValueError as e:
            raise bad_request(str(e), param="messages") from e
        self._check_size(text, len(body.messages or []))
        decision = await self._decide(ROUTER_MODEL, text, body.router)
        routing = self._routing(
            request_id, decision, decision["expert"], None, {"routing": time.perf_counter() - start}, []
        )
        routing["probs"] = decision.get("probs")
        return JSONResponse({"routing": routing}, headers=self._headers(routing))

    # --- online learning --------------------------------------------------------------------------------
    def _learner_or_error(self):
        if self.learner is None:
            raise APIError(
                501, "online learning is not enabled in this deployment (no `learner` section)", code="learner_disabled"
            )
        return self.learner

    async def _ask_learner(self, ref):
        try:
            return await asyncio.wait_for(ref, self.config.learner.record_timeout_s)
        except (asyncio.TimeoutError, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
            raise APIError(
                503,
                f"learner unavailable, nothing was recorded; retry: {_short(e)}",
                "server_error",
                code="learner_unavailable",
            ) from e

    @app.post("/v1/feedback")
    async def feedback(self, request: Request):
        """A quality score in [0, 1] for an answered request; acknowledged only once it is on disk."""
        learner = self._learner_or_error()
        body: FeedbackRequest = await self._parse(request, FeedbackRequest)
        try:
            await self._ask_learner(learner.record_feedback.remote(body.request_id, body.score))
        except UnknownRequestError as e:
            raise not_found(str(e), param="request_id", code="unknown_request") from e
        except DuplicateFeedbackError as e:
            raise APIError(409, str(e), param="request_id", code="duplicate_feedback") from e
        except InvalidScoreError as e:
            raise APIError(422, str(e), param="score", code="invalid_score") from e
        return {"request_id": body.request_id, "score": body.score, "recorded": True}

    @app.post("/admin/rollback")
    async def rollback(self, request: Request):
        """Make the previously published version of a learned strategy live again on every replica."""
        learner = self._learner_or_error()
        body: RollbackRequest = await self._parse(request, RollbackRequest)
        if body.strategy not in self.config.learner.training.strategies:
            raise not_found(
                f"strategy {body.strategy!r} is not learned online; learned: "
                f"{sorted(self.config.learner.training.strategies)}",
                param="strategy",
            )
        try:
            version = await self._ask_learner(learner.rollback.remote(body.strategy))
        except (ValueError, KeyError) as e:
            raise APIError(409, f"cannot roll back {body.strategy}: {_short(e)}", code="no_previous_version") from e
        return {"strategy": body.strategy, "live_version": version}

    @app.get("/v1/learner/status")
    async def learner_status(self):
        """What the learner is doing: versions, updates, publishes, epsilon, loss, replay size, rewards."""
        return await self._ask_learner(self._learner_or_error().status.remote())

    @app.get("/v1/models")
    async def models(self):
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
    async def expert_stats(self):
        """The catalog with each expert's served calls, tokens and measured energy (one replica each)."""
        stats = await asyncio.gather(*(h.stats.remote() for h in self.experts.values()), return_exceptions=True)
        out = []
        for spec, s in zip(self.catalog.experts, stats):
            entry = spec.model_dump(mode="json")
            entry["stats"] = {"error": _short(s)} if isinstance(s, BaseException) else s
            out.append(entry)
        return {"experts": out}

    @app.get("/healthz")
    async def healthz(self):
        return {"status": "ok", "experts": self.catalog.names, "default_strategy": self.config.router.default_strategy}
