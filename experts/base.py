"""The expert interface: one backend class per way of generating text, chosen by `backend.kind` in config."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from experts.catalog import ExpertSpec


class ExpertError(RuntimeError):
    """An expert could not answer (backend down, bad output); the ingress maps it to a 5xx.

    `kind` says what the ingress may do about it: "transient" (timeout, unreachable, 429, 5xx: retry with
    backoff, then fail over), "auth" (the endpoint refused our key: never retried, fail over), "request" (the
    endpoint refused this request as malformed: never retried, not the expert's fault) or "internal" (anything
    else: not retried, fail over)."""

    KINDS = ("transient", "auth", "request", "internal")

    def __init__(self, message: str, kind: str = "internal"):
        if kind not in self.KINDS:
            raise ValueError(f"Invalid ExpertError kind {kind!r}. Available kinds are {list(self.KINDS)}")
        super().__init__(message)
        self.kind = kind


def http_error_kind(status: int) -> str:
    """The ExpertError kind of an endpoint's non-200 status: 401/403 auth, 408/429/5xx transient, other 4xx
    request."""
    if status in (401, 403):
        return "auth"
    if status in (408, 409, 425, 429) or status >= 500:
        return "transient"
    return "request"


@dataclass
class GenerationRequest:
    """What the ingress asks of an expert, whatever its backend."""

    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None  # None: the expert's own default (catalog)
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    request_id: str = ""


@dataclass
class GenerationResult:
    """A finished answer with the figures every expert call must report."""

    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    finish_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)
    """Backend-specific facts, e.g. the recorded score and cost of a replayed answer."""


@dataclass
class StreamChunk:
    """A piece of a streamed answer; the last chunk carries `result` with the totals."""

    delta: str
    result: GenerationResult | None = None


class ExpertBackend(ABC):
    """Generates text for one expert. `start` loads the model; nothing heavy happens in __init__."""

    def __init__(self, spec: ExpertSpec):
        self.spec = spec
        self.config = spec.backend

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load models or open connections."""

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Answer a chat request in one piece."""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Answer piece by piece; backends without native streaming send one chunk."""
        result = await self.generate(request)
        yield StreamChunk(delta=result.text, result=result)

    def max_tokens(self, request: GenerationRequest) -> int:
        """Tokens to generate: the request's cap, never above the expert's `max_new_tokens`."""
        return min(request.max_tokens or self.spec.max_new_tokens, self.spec.max_new_tokens)

    def sampling(self, request: GenerationRequest) -> tuple[float, float]:
        """(temperature, top_p): the request's where it sets them, else the expert's catalog defaults."""
        temperature = self.spec.temperature if request.temperature is None else request.temperature
        return temperature, self.spec.top_p if request.top_p is None else request.top_p


BACKENDS: dict[str, str] = {
    "transformers": "experts.transformers_backend:TransformersBackend",
    "vllm": "experts.vllm_backend:VLLMBackend",
    "openai": "experts.openai_backend:OpenAIBackend",
    "replay": "experts.replay_backend:ReplayBackend",
}


def build_backend(spec: ExpertSpec) -> ExpertBackend:
    """Instantiate the backend named by `spec.backend.kind` (imported lazily: vLLM is a GPU-only extra)."""
    kind = spec.backend.kind
    if kind not in BACKENDS:
        raise ValueError(f"Invalid backend {kind!r}. Available backends are {sorted(BACKENDS)}")
    module, cls = BACKENDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)(spec)
