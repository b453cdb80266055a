"""Real generation with Hugging Face transformers, on CPU or GPU."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

from experts.base import ExpertBackend, ExpertError, GenerationRequest, GenerationResult, StreamChunk
from experts.chat_format import render_chat
from experts.packaged_models import resolve_model

_DONE = object()


class TransformersBackend(ExpertBackend):
    """A causal LM with its chat template. One generation at a time per replica: on CPU, concurrent
    generations only fight over the same cores; scale with replicas instead."""

    async def start(self) -> None:
        """Load the tokenizer and model off the event loop."""
        await asyncio.to_thread(self._load)
        self._lock = asyncio.Lock()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = self.config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        path = resolve_model(cfg.model)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.tokenizer = AutoTokenizer.from_pretrained(path, truncation_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self._torch = torch

    def _inputs(self, request: GenerationRequest):
        return self.tokenizer(
            render_chat(self.tokenizer, request.messages),
            return_tensors="pt",
            truncation=True,
            max_length=self.config.max_input_tokens,
            add_special_tokens=False,
        ).to(self.device)

    def _generate_kwargs(self, request: GenerationRequest, inputs) -> dict:
        temperature, top_p = self.sampling(request)
        sample = temperature > 0
        kwargs = dict(
            **inputs,
            max_new_tokens=self.max_tokens(request),
            do_sample=sample,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        )
        if sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        if request.stop:
            kwargs.update(stop_strings=request.stop, tokenizer=self.tokenizer)
        if request.seed is not None:
            self._torch.manual_seed(request.seed)
        return kwargs

    def _run(self, request: GenerationRequest, streamer=None) -> GenerationResult:
        start = time.perf_counter()
        inputs = self._inputs(request)
        n_in = int(inputs["input_ids"].shape[1])
        with self._torch.inference_mode():
            out = self.model.generate(**self._generate_kwargs(request, inputs), streamer=streamer)
        new = out[0, n_in:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finished = len(new) > 0 and int(new[-1]) == self.tokenizer.eos_token_id
        return GenerationResult(
            text=text.strip(),
            tokens_in=n_in,
            tokens_out=int(len(new)),
            latency_s=time.perf_counter() - start,
            finish_reason="stop" if finished or len(new) < self.max_tokens(request) else "length",
        )

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Generate in a worker thread; the lock runs one generation at a time on this replica's model."""
        async with self._lock:
            try:
                return await asyncio.to_thread(self._run, request)
            except Exception as e:  # surfaced as a 5xx with the cause, the replica keeps serving
                raise ExpertError(f"{self.spec.name}: generation failed: {e}") from e

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Stream through transformers' TextIteratorStreamer while generate() runs in a thread."""
        from transformers import TextIteratorStreamer

        async with self._lock:
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            box: dict = {}

            def work() -> None:
                try:
                    box["result"] = self._run(request, streamer)
                except Exception as e:  # noqa: BLE001 - re-raised in the event loop below
                    box["error"] = e
                    streamer.end()

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            while (piece := await asyncio.to_thread(next, streamer, _DONE)) is not _DONE:
                if piece:
                    yield StreamChunk(delta=piece)
            await asyncio.to_thread(thread.join)
            if "error" in box:
                raise ExpertError(f"{self.spec.name}: generation failed: {box['error']}")
            yield StreamChunk(delta="", result=box["result"])
