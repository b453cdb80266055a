"""The embedding deployment: batches prompts from every ingress replica into one encoder forward pass."""

from __future__ import annotations

import asyncio
import os

import numpy as np
from ray import serve

from router_deployments.deployment_settings import EmbeddingConfig
from router_deployments.encoder import SentenceEncoder


class EmbeddingDeployment:
    """Plain class; the builder deploys it with `settings.deployment_options()`. Lives on a GPU when the replica
    has one."""

    def __init__(self, settings: EmbeddingConfig):
        # Ray sets OMP_NUM_THREADS=1 in actors with fractional CPUs, which makes one short prompt ~40% slower on
        # 2 cores. The encoder is the only compute on the routing path, so by default it gets every core.
        threads = settings.threads or os.cpu_count() or 1
        self.encoder = SentenceEncoder(
            settings.model,
            max_length=settings.max_length,
            device=settings.device,
            runtime=settings.runtime,
            threads=threads,
        )
        self.embed.set_max_batch_size(settings.max_batch_size)
        self.embed.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def embed(self, texts: list[str]) -> list[np.ndarray]:
        """One text in, one unit vector out; Serve gathers concurrent calls into a batch."""
        # Off the event loop so the next batch can gather while this one runs.
        vectors = await asyncio.to_thread(self.encoder.encode, texts, len(texts))
        return list(vectors)

    def info(self) -> dict:
        """Which encoder this replica runs, and where."""
        return {
            "model": self.encoder.model_name,
            "dim": self.encoder.dim,
            "device": self.encoder.device,
            "runtime": self.encoder.runtime,
        }
