"""The Serve replica of one expert: a backend plus the figures every call reports."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator

from experts.base import GenerationRequest, GenerationResult, StreamChunk, build_backend
from experts.carbon_meter import CarbonConfig, CarbonMeter, measured_j
from experts.catalog import ExpertSpec
from experts.energy_model import JOULES_PER_KWH, calibrated_j_per_token

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
        self.carbon = carbon
        self.calls = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.busy_s = 0.0
        self.j_per_token = float(spec.energy_per_token_j)
        """What this replica charges per token: the catalog's figure, recalibrated from its measurements."""
        self._calibrated_at = time.monotonic()

    def _count(self, result: GenerationResult) -> None:
        """Count the call and attach its energy (`extra["energy_j"]`, at this replica's calibrated J/token)."""
        self.calls += 1
        self.tokens_in += result.tokens_in
        self.tokens_out += result.tokens_out
        self.busy_s += result.latency_s
        self._recalibrate()
        result.extra["energy_j"] = self.j_per_token * (result.tokens_in + result.tokens_out)

    def _recalibrate(self, force: bool = False) -> dict:
        """At most once per codecarbon interval: blend the measured J/token into the catalog's figure
        (energy_model.calibrated_j_per_token). Returns the snapshot it read ({} when it read none)."""
        due = time.monotonic() - self._calibrated_at >= self.carbon.measure_interval_s
        if self.meter is None or not (due or force):
            return {}
        self._calibrated_at = time.monotonic()
        snap = self.meter.snapshot()
        joules = measured_j(snap)
        if joules is not None and self.carbon.calibrate_from_measurements:
            tokens = self.tokens_in + self.tokens_out
            prior = self.carbon.calibration_prior_tokens
            self.j_per_token = calibrated_j_per_token(float(self.spec.energy_per_token_j), joules, tokens, prior)
        return snap

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
        """Calls and tokens served by this replica, the energy codecarbon measured for its process, and the
        modelled figures beside it."""
        measured = self._recalibrate(force=True)
        tokens = self.tokens_in + self.tokens_out
        modelled_j = float(self.spec.energy_per_token_j)
        joules = measured_j(measured)
        return {
            "expert": self.spec.name,
            "replica": f"{socket.gethostname()}:{os.getpid()}",
            "calls": self.calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "busy_s": self.busy_s,
            "tokens_per_s": self.tokens_out / self.busy_s if self.busy_s > 0 else None,
            **measured,
            "modelled": {
                "j_per_token": modelled_j,
                "source": "energy model" if self.spec.energy_from_model else "set by hand",
                "energy_kwh": modelled_j * tokens / JOULES_PER_KWH,
            },
            "measured_j_per_token": joules / tokens if joules is not None and tokens else None,
            "calibrated_j_per_token": self.j_per_token,
        }

    def __del__(self):
        meter = getattr(self, "meter", None)
        if meter is not None:
            meter.stop()
