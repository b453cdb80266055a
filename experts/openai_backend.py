"""Any OpenAI-compatible HTTP endpoint as an expert: a vLLM server elsewhere, or a hosted API."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator

from experts.base import (
    ExpertBackend,
    ExpertError,
    GenerationRequest,
    GenerationResult,
    StreamChunk,
    http_error_kind,
)


class OpenAIBackend(ExpertBackend):
    """Calls `POST {base_url}/chat/completions`, plain or streamed, with httpx."""

    async def start(self) -> None:
        """Open the HTTP client, with the API key from `api_key_env` when one is named."""
        import httpx

        cfg = self.config
        headers = {}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ExpertError(f"{self.spec.name}: environment variable {cfg.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.client = httpx.AsyncClient(base_url=cfg.base_url.rstrip("/"), headers=headers, timeout=cfg.timeout_s)

    def _unreachable(self, e: Exception) -> ExpertError:
        """A connection that failed or timed out (httpx's timeout is backend.timeout_s): transient."""
        import httpx

        what = "timed out" if isinstance(e, httpx.TimeoutException) else "unreachable"
        return ExpertError(f"{self.spec.name}: endpoint {what}: {e!r}", kind="transient")

    def _refused(self, status: int, body: str) -> ExpertError:
        """A non-200 answer, classified by its status (experts.base.http_error_kind)."""
        return ExpertError(f"{self.spec.name}: endpoint answered {status}: {body[:300]}", kind=http_error_kind(status))

    def _body(self, request: GenerationRequest, stream: bool) -> dict:
        temperature, top_p = self.sampling(request)
        body = {
            "model": self.config.model,
            "messages": request.messages,
            "max_tokens": self.max_tokens(request),
            "temperature": temperature,
            "top_p": top_p,
            "stream": stream,
        }
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """One POST /chat/completions; an unreachable or failing endpoint is an ExpertError."""
        import httpx

        start = time.perf_counter()
        try:
            resp = await self.client.post("/chat/completions", json=self._body(request, stream=False))
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        if resp.status_code != 200:
            raise self._refused(resp.status_code, resp.text)
        data = resp.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return GenerationResult(
            text=choice["message"]["content"] or "",
            tokens_in=int(usage.get("prompt_tokens", 0)),
            tokens_out=int(usage.get("completion_tokens", 0)),
            latency_s=time.perf_counter() - start,
            finish_reason=choice.get("finish_reason") or "stop",
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """POST /chat/completions with stream=true, relaying the endpoint's deltas."""
        import httpx

        start = time.perf_counter()
        text, usage, reason = [], {}, "stop"
        try:
            async with self.client.stream("POST", "/chat/completions", json=self._body(request, stream=True)) as resp:
                if resp.status_code != 200:
                    raise self._refused(resp.status_code, (await resp.aread()).decode(errors="replace"))
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[len("data:") :].strip()
                    if payload == "[DONE]":
                        break
                    event = json.loads(payload)
                    usage = event.get("usage") or usage
                    for choice in event.get("choices", []):
                        delta = (choice.get("delta") or {}).get("content") or ""
                        reason = choice.get("finish_reason") or reason
                        if delta:
                            text.append(delta)
                            yield StreamChunk(delta=delta)
        except httpx.HTTPError as e:
            raise self._unreachable(e) from e
        yield StreamChunk(
            delta="",
            result=GenerationResult(
                text="".join(text),
                tokens_in=int(usage.get("prompt_tokens", 0)),
                tokens_out=int(usage.get("completion_tokens", len(text))),
                latency_s=time.perf_counter() - start,
                finish_reason=reason,
            ),
        )
