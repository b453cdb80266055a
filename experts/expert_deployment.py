"""The Serve replica of one expert: a backend plus the figures every call reports."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from experts.base import GenerationRequest, GenerationResult, StreamChunk, build_backend
from experts.carbon_meter import CarbonConfig, CarbonMeter
from experts.catalog import ExpertSpec

logger = logging.getLogger(__name__)


class ExpertDeployment:
    """Plain class; the builder wraps it with `serve.deployment(**spec.deployment_options())`."""

    async def __init__(self, spec: ExpertSpec, *, carbon: CarbonConfig):
        self.spec = spec
        self.backend = build_backend(spec)
        await self.backend.start()
        self.meter = None
        if carbon.measure_with_codecarbon:
            self.meter = CarbonMeter(
                carbon.country_iso_code, interval_s=carbon.measure_interval_s, project=f"routerllm-{spec.name}"
            )
        self.calls = 0
        self.tokens_in = 0
        self.tokens_out = 0

    def _count(self, result: GenerationResult) -> None:
        self.calls += 1
        self.tokens_in += result.tokens_in
        self.tokens_out += result.tokens_out

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Answer in one piece."""
        result = await self.backend.generate(request)
        self._count(result)
        return result

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Answer piece by piece; the last chunk carries the totals."""
        async for chunk in self.backend.stream(request):
            if chunk.result is not None:
                self._count(chunk.result)
            yield chunk

    def stats(self) -> dict:
        """Calls and tokens served by this replica, and the energy codecarbon measured for it."""
        measured = self.meter.snapshot() if self.meter else {}
        return {
            "expert": self.spec.name,
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            **measured,
        }

    def __del__(self):
        meter = getattr(self, "meter", None)
        if meter is not None:
            meter.stop()
