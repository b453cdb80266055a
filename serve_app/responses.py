"""What the client gets back: the routing metadata (one typed model from which the body's `routing` object, the
`x-router-*` headers and the request metrics all come), the chat.completion payload and the SSE chunk events.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from experts.base import GenerationResult
from serve_app.budgets import BudgetMetadata
from serve_app.errors import APIError
from serve_app.routed_request import ExpertAnswer, ExpertFailure, RoutedRequest

DONE = "data: [DONE]\n\n"

# Figures that exist only for some answers; the body leaves them out rather than sending null.
_ONLY_WHEN_SET = (
    "failover_from",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "carbon_g",
    "feedback",
    "fanout_outcomes",
    "budget",
)
_USAGE_HEADERS = ("tokens_in", "tokens_out", "cost_usd", "carbon_g")


class RoutingMetadata(BaseModel):
    """How one request was routed and what it cost: the response's `routing` object, in this key order."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    strategy: str
    expert: str
    """The expert that answered (the decision's, or the one failed over to)."""
    confidence: float
    policy_version: int | None
    scores: dict[str, float]
    fanout: list[str]
    latency_ms: dict[str, float]
    failover_from: list[ExpertFailure] | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    carbon_g: float | None = None
    feedback: str | None = None
    """'accepted', or 'unavailable: <why>' when the outcome could not be recorded (feedback will be refused)."""
    fanout_outcomes: dict[str, str] | None = None
    """Outcome id (feedback key) of each other fan-out expert that answered."""
    budget: BudgetMetadata | None = None
    """The budget state after this request (serve_app.budgets)."""

    @classmethod
    def of(
        cls,
        routed: RoutedRequest,
        expert: str,
        answer: ExpertAnswer | None = None,
        failures: list[ExpertFailure] | None = None,
        done: float | None = None,
        **extra: Any,
    ) -> RoutingMetadata:
        """The metadata of `routed` answered by `expert` (`answer`: its figures, if it finished; `done`: when)."""
        decision = routed.decision
        figures: dict[str, Any] = {}
        if answer is not None:
            result = answer.result
            figures = dict(
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                cost_usd=answer.cost_usd,
                carbon_g=answer.carbon_g,
            )
        if routed.budget is not None:
            extra.setdefault("budget", routed.budget.metadata(routed.budget_status, routed.downgraded_from))
        return cls(
            request_id=routed.request_id,
            strategy=decision.strategy,
            expert=expert,
            confidence=round(float(decision.confidence), 6),
            policy_version=decision.policy_version,
            scores=decision.scores,
            fanout=decision.fanout,
            latency_ms={k: round(v * 1000, 3) for k, v in routed.timings(done).items()},
            failover_from=failures or None,
            **figures,
            **extra,
        )

    def body(self) -> dict[str, Any]:
        """The `routing` object of a response body."""
        return self.model_dump(exclude={k for k in _ONLY_WHEN_SET if getattr(self, k) is None})

    def headers(self) -> dict[str, str]:
        """The `x-router-*` headers, so a client can read the routing without parsing the body."""
        headers = {
            "x-router-request-id": self.request_id,
            "x-router-strategy": self.strategy,
            "x-router-expert": self.expert,
            "x-router-confidence": f"{self.confidence:.6f}",
            "x-router-policy-version": str(self.policy_version),
        }
        for key in _USAGE_HEADERS:
            value = getattr(self, key)
            if value is not None:
                headers[f"x-router-{key.replace('_', '-')}"] = str(value)
        if self.failover_from:
            headers["x-router-failover-from"] = ",".join(f.expert for f in self.failover_from)
        latency = self.latency_ms.get("total", self.latency_ms.get("routing"))
        if latency is not None:
            headers["x-router-latency-ms"] = str(latency)
        if self.budget is not None:
            headers["x-router-budget-status"] = self.budget.status
            headers["x-router-carbon-budget-left"] = f"{self.budget.carbon_left_fraction:.6f}"
        return headers


class RouteMetadata(RoutingMetadata):
    """The `/v1/route` answer: the decision alone, with the probability the strategy gave each expert."""

    probs: list[float] | None
    """In catalog order; always present in the body (null when the strategy gave none)."""


def usage(result: GenerationResult) -> dict[str, int]:
    """OpenAI's `usage` object."""
    return {
        "prompt_tokens": result.tokens_in,
        "completion_tokens": result.tokens_out,
        "total_tokens": result.tokens_in + result.tokens_out,
    }


def chat_completion(routing: RoutingMetadata, answer: ExpertAnswer) -> dict[str, Any]:
    """The `chat.completion` body of a non-streaming answer."""
    result = answer.result
    return {
        "id": routing.request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.expert,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": usage(result),
        "routing": routing.body(),
    }


def chunk_event(
    request_id: str, created: int, model: str, delta: dict[str, str], finish: str | None = None, **extra: Any
) -> str:
    """One `chat.completion.chunk` server-sent event."""
    chunk = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(chunk)}\n\n"


def error_event(error: APIError) -> str:
    """An error as a server-sent event: a stream has already answered 200 when an error can happen."""
    return f"data: {json.dumps({'error': {'message': error.message, 'type': error.type, 'code': error.code}})}\n\n"
