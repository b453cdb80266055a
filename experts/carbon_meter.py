"""Energy and emissions of one expert replica, measured by codecarbon. A hook: it never breaks a request.

codecarbon runs in its *process* tracking mode, so four replicas on one host each report their own process (and
its children), not the whole host four times: CPU power is the CPU's power times the share of CPU time the process
used, RAM the process's own memory; on a GPU, codecarbon reads each visible GPU's power through NVML (Ray sets
CUDA_VISIBLE_DEVICES to the replica's own GPUs, and codecarbon tracks only those). The running totals are read
through codecarbon's public API: `flush()` hands them to our output handler (`BaseOutput.out`), nothing private.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from experts.energy_model import JOULES_PER_KWH, GridIntensity

logger = logging.getLogger(__name__)


class CarbonConfig(BaseModel):
    """How energy becomes emissions: the `carbon` section of the YAML, read by every expert replica."""

    model_config = ConfigDict(extra="forbid")

    country_iso_code: str = Field("USA", min_length=3, max_length=3, description="For codecarbon's offline mode.")
    grid_intensity_g_per_kwh: float = Field(400.0, gt=0, description="gCO2eq per kWh for per-request estimates.")
    grid_intensity_file: str | None = Field(
        None,
        description="Hourly grid intensity CSV (hour_utc,g_per_kwh or timestamp,g_per_kwh): per-request carbon "
        "follows it, and grid_intensity_g_per_kwh becomes its mean.",
    )
    follow_grid: bool = Field(
        True,
        description="Scale each request's carbon weight by the grid's intensity now over its mean (a file's mean), so "
        "routing turns greener when the grid is dirtier; no effect with a constant intensity.",
    )
    measure_with_codecarbon: bool = Field(True, description="Measure each expert replica's energy with codecarbon.")
    measure_interval_s: float = Field(15.0, gt=0, description="How often codecarbon samples power.")
    calibrate_from_measurements: bool = Field(
        True,
        description="Charge each call at the replica's J/token recalibrated from codecarbon; false: the catalog's "
        "figure (when the expert stands for a larger model than the one that runs, as in configs/cpu.yaml).",
    )
    calibration_prior_tokens: int = Field(
        2000,
        ge=1,
        description="Tokens of evidence the modelled J/token counts as when a replica blends in its measurement.",
    )

    @model_validator(mode="after")
    def _grid_file(self) -> CarbonConfig:
        """A grid file is read once here (a bad one fails the config, naming the line), its path made absolute
        (replicas run elsewhere), and its mean becomes the constant that routing's priors use."""
        if self.grid_intensity_file:
            self.grid_intensity_file = str(Path(self.grid_intensity_file).expanduser().resolve())
            self.grid_intensity_g_per_kwh = GridIntensity.from_file(self.grid_intensity_file).constant
        return self

    def grid(self) -> GridIntensity:
        """The grid's intensity over time (a constant unless a file is given)."""
        if self.grid_intensity_file:
            return GridIntensity.from_file(self.grid_intensity_file)
        return GridIntensity(self.grid_intensity_g_per_kwh)


def _latest_totals_handler():
    """A codecarbon output handler that keeps the last totals it was handed (built lazily: codecarbon is optional
    to import)."""
    from codecarbon.output_methods.base_output import BaseOutput

    class LatestTotals(BaseOutput):
        def __init__(self) -> None:
            self.total: Any = None

        def out(self, total, delta) -> None:
            self.total = total

        def live_out(self, total, delta) -> None:
            self.total = total

    return LatestTotals()


class CarbonMeter:
    """Runs codecarbon's OfflineEmissionsTracker for the life of a replica (offline: an explicit country, no
    network guess, nothing written to disk; process tracking mode) and reports what it measured so far."""

    def __init__(self, country_iso_code: str, interval_s: float = 15.0, project: str = "routerllm"):
        self._tracker = None
        self._lock = threading.Lock()
        self.started = time.time()
        try:
            from codecarbon import OfflineEmissionsTracker

            self._handler = _latest_totals_handler()
            self._tracker = OfflineEmissionsTracker(
                country_iso_code=country_iso_code,
                project_name=project,
                measure_power_secs=interval_s,
                tracking_mode="process",
                save_to_file=False,
                output_handlers=[self._handler],
                allow_multiple_runs=True,  # one tracker per replica process, several on a host
                log_level="error",
            )
            self._tracker.start()
        except Exception as e:  # noqa: BLE001 - carbon tracking must not stop an expert from serving
            logger.warning("codecarbon tracker unavailable, carbon figures are estimates only: %s", e)
            self._tracker = None

    @property
    def active(self) -> bool:
        """Whether codecarbon is measuring (False when it could not start)."""
        return self._tracker is not None

    def snapshot(self) -> dict[str, Any]:
        """Energy (kWh, and by part) and emissions (gCO2eq) measured for this process since the replica started;
        {} when codecarbon is not running."""
        if self._tracker is None:
            return {}
        try:
            with self._lock:  # flush measures now and hands the totals to our handler
                self._tracker.flush()
                data = self._handler.total
            if data is None:
                return {}
            return {
                "energy_kwh": float(data.energy_consumed),
                "emissions_g": float(data.emissions) * 1000.0,
                "cpu_kwh": float(data.cpu_energy),
                "gpu_kwh": float(data.gpu_energy),
                "ram_kwh": float(data.ram_energy),
                "duration_s": float(data.duration),
                "tracking_mode": str(data.tracking_mode),
            }
        except Exception as e:  # noqa: BLE001
            logger.warning("codecarbon snapshot failed: %s", e)
            return {}

    def stop(self) -> None:
        """Stop the tracker; a failure is logged, never raised."""
        if self._tracker is not None:
            try:
                self._tracker.stop()
            except Exception as e:  # noqa: BLE001
                logger.warning("codecarbon stop failed: %s", e)


def measured_j(snapshot: dict[str, Any]) -> float | None:
    """Joules in a snapshot (None when nothing was measured)."""
    kwh = snapshot.get("energy_kwh")
    return None if kwh is None else float(kwh) * JOULES_PER_KWH
