"""A CPU stand-in for the three names the vLLM backend takes from `vllm`, for wiring tests and dry runs.

Select it with `backend: {kind: vllm, engine_module: experts.fake_vllm}`. It speaks vLLM's interface
(`AsyncEngineArgs`, `AsyncLLMEngine.from_engine_args`, `generate` yielding cumulative `RequestOutput`s,
`abort`) and answers deterministically by echoing the last line of the prompt. It is not a language model.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


class AsyncEngineArgs:
    """Accepts the fields the backend passes; keeps unknown ones in `extra` as vLLM would validate them."""

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        dtype: str = "auto",
        **extra: Any,
    ):
        self.model = model
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.dtype = dtype
        self.extra = extra


@dataclass
class SamplingParams:
    """vLLM's sampling options, the fields the backend sets."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None


@dataclass
class CompletionOutput:
    """One completion of a request, cumulative so far."""

    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    """vLLM's per-step output of one request."""

    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool


class AsyncLLMEngine:
    """Echoes the prompt's last non-empty line word by word, as vLLM streams tokens."""

    def __init__(self, args: AsyncEngineArgs):
        self.args = args
        self.aborted: list[str] = []

    @classmethod
    def from_engine_args(cls, args: AsyncEngineArgs) -> AsyncLLMEngine:
        """Build the engine as vLLM does."""
        return cls(args)

    async def generate(self, prompt: str, params: SamplingParams, request_id: str):
        """Yield cumulative outputs echoing the prompt's last non-assistant line, word by word."""
        prompt_ids = list(range(len(prompt.split())))
        lines = [line for line in prompt.splitlines() if line.strip() and not line.startswith("assistant")]
        words = ("echo: " + (lines[-1] if lines else "")).split()
        words = words[: params.max_tokens]
        text = ""
        for i, word in enumerate(words):
            await asyncio.sleep(0)
            text = f"{text} {word}".strip()
            done = i == len(words) - 1
            reason = ("length" if len(words) == params.max_tokens else "stop") if done else None
            yield RequestOutput(request_id, prompt_ids, [CompletionOutput(text, list(range(i + 1)), reason)], done)

    async def abort(self, request_id: str) -> None:
        """Remember the aborted request id (tests check that a cancelled stream aborts)."""
        self.aborted.append(request_id)
