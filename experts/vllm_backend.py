"""Production experts: vLLM's async engine, one per GPU replica (install with `pip install .[gpu]`).

The engine module is a config switch (`backend.engine_module`): `vllm` in production, `experts.fake_vllm` to run
this exact wiring on a CPU machine, the way Ray's own tests swap the vLLM engine class.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import AsyncIterator

from experts.base import ExpertBackend, ExpertError, GenerationRequest, GenerationResult, StreamChunk
from experts.chat_format import render_chat
from experts.packaged_models import resolve_model


class VLLMBackend(ExpertBackend):
    """Streams from `AsyncLLMEngine.generate`, which yields cumulative outputs per request."""

    async def start(self) -> None:
        """Import the engine module and start AsyncLLMEngine with the spec's engine arguments."""
        cfg = self.config
        try:
            engine_mod = importlib.import_module(cfg.engine_module)
        except ImportError as e:
            raise ExpertError(
                f"{self.spec.name}: backend 'vllm' needs the GPU extra (pip install '.[gpu]'); "
                f"importing {cfg.engine_module!r} failed: {e}"
            ) from e
        from transformers import AutoTokenizer

        model_path = resolve_model(cfg.model)
        args = engine_mod.AsyncEngineArgs(
            model=model_path,
            tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
            dtype=cfg.dtype,
            **cfg.engine_kwargs,
        )
        self.engine = engine_mod.AsyncLLMEngine.from_engine_args(args)
        self._sampling_params = engine_mod.SamplingParams
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)

    def _params(self, request: GenerationRequest):
        temperature, top_p = self.sampling(request)
        return self._sampling_params(
            max_tokens=self.max_tokens(request),
            temperature=temperature,
            top_p=top_p,
            stop=request.stop,
            seed=request.seed,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Stream vLLM's cumulative outputs as deltas; a cancelled stream aborts the request."""
        start = time.perf_counter()
        prompt = render_chat(self.tokenizer, request.messages)
        request_id = request.request_id or f"{self.spec.name}-{time.monotonic_ns()}"
        sent, last, finished = 0, None, False
        try:
            async for out in self.engine.generate(prompt, self._params(request), request_id):
                last = out
                text = out.outputs[0].text
                if len(text) > sent:
                    yield StreamChunk(delta=text[sent:])
                    sent = len(text)
            finished = True
        except Exception as e:
            raise ExpertError(f"{self.spec.name}: vLLM generation failed: {e}") from e
        finally:
            if not finished:  # the client went away: free the engine's slot
                await _maybe_await(self.engine.abort(request_id))
        if last is None:
            raise ExpertError(f"{self.spec.name}: vLLM returned no output")
        completion = last.outputs[0]
        yield StreamChunk(
            delta="",
            result=GenerationResult(
                text=completion.text,
                tokens_in=len(last.prompt_token_ids or []),
                tokens_out=len(completion.token_ids),
                latency_s=time.perf_counter() - start,
                finish_reason=completion.finish_reason or "stop",
            ),
        )

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """The whole answer: the stream's last chunk carries it."""
        result = None
        async for chunk in self.stream(request):
            result = chunk.result or result
        assert result is not None
        return result


async def _maybe_await(value) -> None:
    if hasattr(value, "__await__"):
        await value
