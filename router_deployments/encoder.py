"""Sentence encoder: a BERT-family model, mean-pooled and L2-normalised, truncated keeping the prompt's end.

Prompts often carry long few-shot prefixes; the part that decides routing is the question at the end, so the
tokenizer truncates from the left.
"""

from __future__ import annotations

import numpy as np

from experts.packaged_models import resolve_model

DEFAULT_ENCODER = "packaged:all-minilm-l6-v2"


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceEncoder:
    """Embeds texts into unit vectors. Any hub id or local path works; `packaged:` names need no hub."""

    def __init__(self, model: str = DEFAULT_ENCODER, max_length: int = 256, device: str = "auto"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(model)
        self.model_name = model
        self.device = pick_device(device)
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path, truncation_side="left")
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Return a float32 array [len(texts), dim] of unit-norm embeddings."""
        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding small when a batch mixes short and long prompts.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out
