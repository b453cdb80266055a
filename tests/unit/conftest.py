"""Fixtures shared by the unit tests."""

import hashlib

import numpy as np
import pytest
import torch

from training.data import prepared


@pytest.fixture
def fake_embeddings(monkeypatch):
    """Seeded random unit vectors per text in place of the cached MiniLM embeddings (training.data.prepared.embed,
    which every command embeds through): the encoder is not under test.

    Also restores torch's thread count, which the online bench sets for its run."""

    def embed(texts, embedder=None):
        seeds = [int(hashlib.sha1(t.encode()).hexdigest()[:8], 16) for t in texts]
        vectors = np.stack([np.random.default_rng(s).normal(size=384) for s in seeds]).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(prepared, "embed", embed)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
