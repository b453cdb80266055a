"""Embeddings cached on disk by encoder and text, so benches and training embed each prompt once."""

from __future__ import annotations

import hashlib

import numpy as np
from tqdm import tqdm

from experts.packaged_models import cache_dir
from router_deployments.encoder import DEFAULT_ENCODER, SentenceEncoder


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def embed_texts(
    texts: list[str], model: str = DEFAULT_ENCODER, max_length: int = 256, batch_size: int = 32
) -> np.ndarray:
    """Return [len(texts), dim] unit embeddings, computing only those not already cached."""
    tag = hashlib.sha1(f"{model}|{max_length}".encode()).hexdigest()[:12]
    path = cache_dir() / "embeddings" / f"{tag}.npz"
    cached: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            cached = dict(zip(z["keys"].tolist(), z["vectors"]))
    keys = [_key(t) for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in cached}.items())
    if todo:
        encoder = SentenceEncoder(model, max_length=max_length)
        for start in tqdm(range(0, len(todo), batch_size), desc=f"embedding {len(todo)} prompts", unit="batch"):
            chunk = todo[start : start + batch_size]
            vectors = encoder.encode([t for _, t in chunk], batch_size=batch_size)
            cached.update({k: v for (k, _), v in zip(chunk, vectors)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(cached)), vectors=np.stack(list(cached.values())))
        tmp.replace(path)
    return np.stack([cached[k] for k in keys]).astype(np.float32)
