"""Sentence encoder: a BERT-family model, mean-pooled and L2-normalised, truncated keeping the prompt's end.

Prompts often carry long few-shot prefixes; the part that decides routing is the question at the end, so the
tokenizer truncates from the left.

On CPU the model runs under ONNX Runtime by default: the transformers model is exported to ONNX in memory at load
time (about 1 s) and checked against the PyTorch forward pass. For one short prompt on 2 cores that takes MiniLM
from ~11 ms (PyTorch eager) to ~4 ms with the same vectors (max abs difference ~2e-6). `runtime="torch"` keeps
PyTorch; on a GPU PyTorch is always used.

A batch of prompts is tokenized once and run in runs of similar length (`length_buckets`): a forward pass costs
about a fixed overhead plus its padded tokens, so one short prompt padded to the length of a long one wastes more
than a second, shorter pass costs.
"""

from __future__ import annotations

import io
import logging
import os
import warnings

import numpy as np

from experts.packaged_models import resolve_model

DEFAULT_ENCODER = "packaged:all-minilm-l6-v2"
RUNTIMES = ("auto", "onnx", "torch")
# Largest difference allowed between the ONNX and PyTorch embeddings of the check batch.
ONNX_TOLERANCE = 1e-4
# What one more forward pass costs, in padded tokens: MiniLM under ONNX Runtime on 2 cores spends ~2.4 ms per
# call plus ~0.18 ms per token (CPU time, batches of 1-64 x 8-64 tokens), i.e. one call ~ 13 tokens.
CALL_COST_TOKENS = 13

logger = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    """'auto' becomes 'cuda' when a GPU is visible, else 'cpu'; any other name is kept."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def length_buckets(lengths: list[int], max_size: int, call_cost: float = CALL_COST_TOKENS) -> list[tuple[int, int]]:
    """Split ascending `lengths` into consecutive runs [start, stop) of at most `max_size` that minimise the padded
    tokens (run size x its longest) plus `call_cost` per run: the cheapest way to cut a sorted batch."""
    n = len(lengths)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for stop in range(1, n + 1):
        for start in range(max(0, stop - max_size), stop):
            cost = best[start] + call_cost + (stop - start) * lengths[stop - 1]
            if cost < best[stop]:
                best[stop], cut[stop] = cost, start
    runs, stop = [], n
    while stop > 0:
        runs.append((cut[stop], stop))
        stop = cut[stop]
    return runs[::-1]


class EncoderRuntimeError(RuntimeError):
    """The requested runtime cannot run this encoder (export failed, or its outputs differ from PyTorch's)."""


class SentenceEncoder:
    """Embeds texts into unit vectors. Any hub id or local path works; `packaged:` names need no hub."""

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        max_length: int = 256,
        device: str = "auto",
        runtime: str = "auto",
        threads: int | None = None,
    ):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        path = resolve_model(model)
        self.model_name = model
        self.path = path
        self.device = pick_device(device)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path, truncation_side="left")
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch
        self._session = None
        self.runtime = "torch"
        if self.device == "cpu" and threads:
            torch.set_num_threads(threads)
        if self.device == "cpu" and runtime != "torch":
            try:
                self._session = self._onnx_session(threads or os.cpu_count() or 1)
                self.runtime = "onnx"
                self.model = None  # the session holds its own copy of the weights
            except (ImportError, EncoderRuntimeError) as e:
                if runtime == "onnx":
                    raise EncoderRuntimeError(f"cannot run encoder {model!r} under ONNX Runtime: {e}") from e
                logger.warning("encoder %s stays on PyTorch: %s", model, e)
        elif runtime == "onnx":
            raise EncoderRuntimeError(f"runtime 'onnx' is for CPU encoders; this one is on {self.device}")

    # --- ONNX Runtime -------------------------------------------------------------------------------------
    def _onnx_session(self, threads: int):
        import onnxruntime as ort

        torch = self._torch

        class LastHidden(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        from transformers import AutoModel

        probe = self._tokenize(["Route me.", "A longer prompt, so that the check batch carries some padding."])
        # Export a separate copy with eager attention: tracing SDPA's mask handling bakes in the probe's padding,
        # and tracing leaves state behind in the traced module.
        traced = AutoModel.from_pretrained(self.path, attn_implementation="eager").eval()
        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings():
                # The tracer warns about each data-dependent branch it freezes; the check below is what we trust.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    LastHidden(traced),
                    (torch.from_numpy(probe["input_ids"]), torch.from_numpy(probe["attention_mask"])),
                    buffer,
                    input_names=["input_ids", "attention_mask"],
                    output_names=["last_hidden_state"],
                    dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask")},
                    opset_version=17,
                    dynamo=False,
                )
        except Exception as e:  # the exporter raises many kinds; all mean "this model does not export"
            raise EncoderRuntimeError(f"ONNX export failed: {e}") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between runs: on a small machine the spinning threads would take the cores that the
        # ingress and router processes need right after the embedding is done.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v) for k, v in probe.items()}
            expected = self._pool(self.model(**tensors).last_hidden_state.numpy(), probe["attention_mask"])
        got = self._pool(session.run(None, probe)[0], probe["attention_mask"])
        diff = float(np.abs(got - expected).max())
        if not diff <= ONNX_TOLERANCE:
            raise EncoderRuntimeError(f"ONNX outputs differ from PyTorch's by {diff:.2e} (> {ONNX_TOLERANCE})")
        return session

    # --- encoding -----------------------------------------------------------------------------------------
    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, unpadded, truncated to max_length from the left."""
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def _pad(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        """int64 input_ids and attention_mask [len(rows), longest], padded on the right as the tokenizer pads."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def _tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self._pad(self._token_ids(texts))

    def _hidden(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """Last hidden states [batch, tokens, dim] as float32 numpy."""
        if self._session is not None:
            return self._session.run(None, batch)[0]
        tensors = {k: self._torch.from_numpy(v).to(self.device) for k, v in batch.items()}
        return self.model(**tensors).last_hidden_state.float().cpu().numpy()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Return a float32 array [len(texts), dim] of unit-norm embeddings; at most `batch_size` texts per
        forward pass, in runs of similar length."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self._token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        with self._torch.inference_mode():
            for start, stop in length_buckets([len(ids[i]) for i in order], batch_size):
                idx = order[start:stop]
                batch = self._pad([ids[i] for i in idx])
                out[idx] = self._pool(self._hidden(batch), batch["attention_mask"])
        return out

    @staticmethod
    def _pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Mean over the real tokens (padding masked out), then L2-normalised."""
        mask = attention_mask[..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
