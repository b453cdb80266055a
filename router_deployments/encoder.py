"""Sentence encoder: a BERT-family model, mean-pooled and L2-normalised, truncated keeping the prompt's end.

Prompts often carry long few-shot prefixes; the part that decides routing is the question at the end, so the
tokenizer truncates from the left.

On CPU the model runs under ONNX Runtime by default: the transformers model is exported to ONNX in memory at load
time (about 1 s) and checked against the PyTorch forward pass. For one short prompt on 2 cores that takes MiniLM
from ~11 ms (PyTorch eager) to ~4 ms with the same vectors (max abs difference ~2e-6). `runtime="torch"` keeps
PyTorch; on a GPU PyTorch is always used.
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

logger = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    """'auto' becomes 'cuda' when a GPU is visible, else 'cpu'; any other name is kept."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
                    (probe["input_ids"], probe["attention_mask"]),
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
            expected = self._pool(self.model(**probe).last_hidden_state.numpy(), probe)
        got = self._pool(session.run(None, self._feed(probe))[0], probe)
        diff = float(np.abs(got - expected).max())
        if not diff <= ONNX_TOLERANCE:
            raise EncoderRuntimeError(f"ONNX outputs differ from PyTorch's by {diff:.2e} (> {ONNX_TOLERANCE})")
        return session

    @staticmethod
    def _feed(batch) -> dict[str, np.ndarray]:
        return {k: batch[k].numpy() for k in ("input_ids", "attention_mask")}

    # --- encoding -----------------------------------------------------------------------------------------
    def _tokenize(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def _hidden(self, batch) -> np.ndarray:
        """Last hidden states [batch, tokens, dim] as float32 numpy."""
        if self._session is not None:
            return self._session.run(None, self._feed(batch))[0]
        hidden = self.model(**batch.to(self.device)).last_hidden_state
        return hidden.float().cpu().numpy()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Return a float32 array [len(texts), dim] of unit-norm embeddings."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding small when a batch mixes short and long prompts.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self._tokenize([texts[i] for i in idx])
                out[idx] = self._pool(self._hidden(batch), batch)
        return out

    @staticmethod
    def _pool(hidden: np.ndarray, batch) -> np.ndarray:
        """Mean over the real tokens (padding masked out), then L2-normalised."""
        mask = batch["attention_mask"].numpy()[..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
