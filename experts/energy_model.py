"""How much energy an expert spends per token, and how much carbon a kWh costs on the grid right now.

Energy per token (docs/energy.md has the derivation and the sources):

    J/token = P / tokens_per_s
    P            = power_w x power_fraction                       (board power while decoding)
    tokens_per_s = measured throughput, when the hardware gives one (`tokens_per_s`: a CPU, or a measured GPU); else
                   memory-bound decode: every generated token reads every weight once, and the sequences decoded
                   together share that read:
                   bandwidth_efficiency x memory_bandwidth / (bytes_per_param x params) x concurrent_sequences

The catalog's `energy_per_token_j` comes from here unless the YAML sets it by hand. At run time each expert replica
recalibrates it from what codecarbon measured for that replica (`calibrated_j_per_token`).

Grid intensity: a constant, or an hourly series from a CSV file, so that per-request carbon follows the grid.
"""

from __future__ import annotations

import bisect
import csv
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

JOULES_PER_KWH = 3.6e6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HardwareSpec(_Strict):
    """One accelerator (or a CPU allotment) an expert replica runs on."""

    kind: Literal["gpu", "cpu"] = Field(description="'gpu' or 'cpu'.")
    name: str = Field(description="What it is, e.g. 'NVIDIA A100 80GB SXM'.")
    power_w: float = Field(gt=0, description="Board power (TDP) of the GPU, or of the CPU cores the replica uses.")
    power_fraction: float = Field(
        0.75, gt=0, le=1, description="Share of power_w drawn while decoding (measured LLM inference: 0.6-0.9)."
    )
    memory_bandwidth_gb_s: float | None = Field(None, gt=0, description="Peak memory bandwidth, GB/s.")
    bandwidth_efficiency: float = Field(
        0.6, gt=0, le=1, description="Share of peak bandwidth decode achieves (0.5-0.8 in vLLM-class engines)."
    )
    tokens_per_s: float | None = Field(
        None, gt=0, description="Measured decode throughput of this model on this hardware; overrides the bound."
    )

    @model_validator(mode="after")
    def _throughput_source(self) -> HardwareSpec:
        if self.tokens_per_s is None and self.memory_bandwidth_gb_s is None:
            raise ValueError(
                f"hardware {self.name!r} needs memory_bandwidth_gb_s (decode bound) or tokens_per_s (measured)"
            )
        return self


# Datasheet figures (docs/energy.md lists the sources). A CPU has no entry: its throughput must be measured.
HARDWARE_PRESETS: dict[str, HardwareSpec] = {
    "a100-80gb": HardwareSpec(kind="gpu", name="NVIDIA A100 80GB SXM", power_w=400, memory_bandwidth_gb_s=2039),
    "a100-40gb": HardwareSpec(kind="gpu", name="NVIDIA A100 40GB SXM", power_w=400, memory_bandwidth_gb_s=1555),
    "h100-sxm": HardwareSpec(kind="gpu", name="NVIDIA H100 SXM 80GB", power_w=700, memory_bandwidth_gb_s=3350),
    "h200": HardwareSpec(kind="gpu", name="NVIDIA H200 SXM 141GB", power_w=700, memory_bandwidth_gb_s=4800),
    "l4": HardwareSpec(kind="gpu", name="NVIDIA L4", power_w=72, memory_bandwidth_gb_s=300),
    "a10": HardwareSpec(kind="gpu", name="NVIDIA A10", power_w=150, memory_bandwidth_gb_s=600),
    "t4": HardwareSpec(kind="gpu", name="NVIDIA T4", power_w=70, memory_bandwidth_gb_s=320),
}


class EnergyModelSpec(_Strict):
    """What the energy model needs to know about one expert besides its parameter count."""

    hardware: str | HardwareSpec = Field(
        description=f"A preset ({', '.join(sorted(HARDWARE_PRESETS))}) or a hardware description."
    )
    bytes_per_param: float = Field(
        2.0, gt=0, description="Weight precision in bytes: 2 for bf16/fp16, 1 for int8/fp8, 0.5 for 4-bit (AWQ)."
    )
    concurrent_sequences: int = Field(
        8, ge=1, description="Sequences decoded together (continuous batching shares each weight read among them)."
    )

    @model_validator(mode="after")
    def _known_preset(self) -> EnergyModelSpec:
        if isinstance(self.hardware, str) and self.hardware not in HARDWARE_PRESETS:
            raise ValueError(
                f"unknown hardware preset {self.hardware!r}. Available presets are {sorted(HARDWARE_PRESETS)}; "
                "or describe it: {kind, name, power_w, memory_bandwidth_gb_s | tokens_per_s}"
            )
        return self

    @property
    def resolved_hardware(self) -> HardwareSpec:
        """The hardware description (a preset looked up)."""
        return HARDWARE_PRESETS[self.hardware] if isinstance(self.hardware, str) else self.hardware


class EnergyEstimate(_Strict):
    """The model's answer for one expert, with the terms it was computed from."""

    j_per_token: float
    power_w: float
    tokens_per_s: float
    throughput_from: Literal["measured", "memory_bound_decode"]


def decode_tokens_per_s(params_b: float, spec: EnergyModelSpec) -> float:
    """Tokens per second the hardware decodes: measured, else the memory-bandwidth bound (see the module doc)."""
    hw = spec.resolved_hardware
    if hw.tokens_per_s is not None:
        return hw.tokens_per_s
    bytes_per_token = spec.bytes_per_param * params_b * 1e9
    return hw.bandwidth_efficiency * hw.memory_bandwidth_gb_s * 1e9 / bytes_per_token * spec.concurrent_sequences


def estimate_energy(params_b: float, spec: EnergyModelSpec) -> EnergyEstimate:
    """Joules per token of a `params_b`-billion-parameter model on `spec`'s hardware."""
    if not (math.isfinite(params_b) and params_b > 0):
        raise ValueError(f"params_b must be a positive number, got {params_b!r}")
    hw = spec.resolved_hardware
    power = hw.power_w * hw.power_fraction
    tps = decode_tokens_per_s(params_b, spec)
    return EnergyEstimate(
        j_per_token=power / tps,
        power_w=power,
        tokens_per_s=tps,
        throughput_from="measured" if hw.tokens_per_s is not None else "memory_bound_decode",
    )


def calibrated_j_per_token(modelled: float, measured_j: float, tokens: int, prior_tokens: int) -> float:
    """The modelled figure moved toward the measured one: a token-weighted mean in which the model counts as
    `prior_tokens` tokens of evidence and the measurement as the tokens it covers, so a few measured tokens barely
    move it and a long measurement replaces it."""
    if tokens <= 0 or measured_j < 0 or not math.isfinite(measured_j):
        return modelled
    measured = measured_j / tokens
    return (prior_tokens * modelled + tokens * measured) / (prior_tokens + tokens)


class GridIntensity:
    """gCO2eq per kWh at a given time: a constant, or an hourly series read from a CSV file.

    The file has a header and two columns: `hour_utc,g_per_kwh` (24 rows, hours 0-23: a daily profile that repeats)
    or `timestamp,g_per_kwh` (ISO-8601 times in increasing order: each value holds until the next; before the first
    the first holds, after the last the last)."""

    def __init__(self, constant: float, series: list[tuple[float, float]] | None = None, daily: bool = False):
        if not (math.isfinite(constant) and constant > 0):
            raise ValueError(f"grid intensity must be a positive number of gCO2eq/kWh, got {constant!r}")
        self.constant = constant
        self.series = series or []
        self.daily = daily
        self._times = [t for t, _ in self.series]

    @classmethod
    def from_file(cls, path: str | Path) -> GridIntensity:
        """Read an hourly CSV (see the class doc); a clear ValueError names what is wrong and where."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise ValueError(f"grid intensity file {p} does not exist")
        with p.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or set(rows[0]) not in ({"hour_utc", "g_per_kwh"}, {"timestamp", "g_per_kwh"}):
            raise ValueError(f"grid intensity file {p} must have columns hour_utc,g_per_kwh or timestamp,g_per_kwh")
        daily = "hour_utc" in rows[0]
        series = [_row(p, i, r, daily) for i, r in enumerate(rows, start=2)]
        times = [t for t, _ in series]
        if daily and sorted(times) != [float(h) for h in range(24)]:
            raise ValueError(f"grid intensity file {p}: hour_utc must list each hour 0-23 once")
        if not daily and any(b <= a for a, b in zip(times, times[1:])):
            raise ValueError(f"grid intensity file {p}: timestamps must increase")
        series.sort()
        mean = sum(v for _, v in series) / len(series)
        return cls(mean, series, daily)

    def at(self, unix_time: float) -> float:
        """gCO2eq/kWh at `unix_time`."""
        if not self.series:
            return self.constant
        key = float(datetime.fromtimestamp(unix_time, timezone.utc).hour) if self.daily else unix_time
        i = bisect.bisect_right(self._times, key) - 1
        return self.series[max(i, 0)][1]


def _row(path: Path, line: int, row: dict[str, str], daily: bool) -> tuple[float, float]:
    try:
        value = float(row["g_per_kwh"])
        if daily:
            key = float(int(row["hour_utc"]))
        else:
            stamp = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
            key = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    except (TypeError, ValueError) as e:
        raise ValueError(f"grid intensity file {path}, line {line}: {e}") from e
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"grid intensity file {path}, line {line}: g_per_kwh must be positive, got {value}")
    return key, value
