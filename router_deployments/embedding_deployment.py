"""The embedding deployment: one encoder forward pass per batch of prompts.

On the routing path the router deployment sends it each batch of queries whole (`embed_batch`); `embed` takes
single texts and batches concurrent callers (router_deployments.batching).
"""

from __future__ import annotations

import asyncio
import os

import numpy as np

from router_deployments.batching import NaturalBatcher
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
        self.max_batch_size = settings.max_batch_size
        # One forward pass at a time: two at once would share the same cores (or GPU) and each take twice as long.
        self._forward = asyncio.Lock()
        self.batches = 0  # embed_batch calls; each runs as one or a few forward passes (runs of similar length)
        self.prompts = 0
        self.batcher = NaturalBatcher(self._embed_texts, settings.max_batch_size, settings.batch_wait_timeout_s)

    async def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Unit vectors [len(texts), dim] of a batch gathered by the caller (the router deployment)."""
        async with self._forward:
            self.batches += 1
            self.prompts += len(texts)
            # Off the event loop, so that the replica keeps taking requests while this one runs.
            return await asyncio.to_thread(self.encoder.encode, texts, self.max_batch_size)

    async def embed(self, text: str) -> np.ndarray:
        """One text in, one unit vector out; concurrent calls are embedded together."""
        return await self.batcher.submit(text)

    async def _embed_texts(self, texts: list[str]) -> list[np.ndarray]:
        return list(await self.embed_batch(texts))

    def info(self) -> dict:
        """Which encoder this replica runs, and where."""
        return {
            "model": self.encoder.model_name,
            "dim": self.encoder.dim,
            "device": self.encoder.device,
            "runtime": self.encoder.runtime,
            "batches": self.batches,
            "prompts": self.prompts,
        }
