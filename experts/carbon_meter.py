"""Energy and emissions of one expert replica, measured by codecarbon. A hook: it never breaks a request."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)


class CarbonConfig(BaseModel):
    """How energy becomes emissions: the `carbon` section of the YAML, read by every expert replica."""

    model_config = ConfigDict(extra="forbid")

    country_iso_code: str = Field("USA", min_length=3, max_length=3, description="For codecarbon's offline mode.")
    grid_intensity_g_per_kwh: float = Field(400.0, gt=0, description="gCO2eq per kWh for per-request estimates.")
    measure_with_codecarbon: bool = Field(True, description="Measure each expert replica's energy with codecarbon.")
    measure_interval_s: float = Field(15.0, gt=0, description="How often codecarbon samples power.")


class CarbonMeter:
    """Runs codecarbon's OfflineEmissionsTracker for the life of a replica (offline: an explicit country, no
    network guess, nothing written to disk) and reports the energy and emissions measured so far."""

    def __init__(self, country_iso_code: str, interval_s: float = 15.0, project: str = "routerllm"):
        self._tracker = None
        try:
            from codecarbon import OfflineEmissionsTracker

            self._tracker = OfflineEmissionsTracker(
                country_iso_code=country_iso_code,
                project_name=project,
                measure_power_secs=interval_s,
                save_to_file=False,
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

    def snapshot(self) -> dict[str, float]:
        """Energy (kWh) and emissions (gCO2eq) measured since the replica started."""
        if self._tracker is None:
            return {}
        try:
            data = self._tracker._prepare_emissions_data()  # codecarbon's own running totals
            return {"energy_kwh": float(data.energy_consumed), "emissions_g": float(data.emissions) * 1000.0}
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
