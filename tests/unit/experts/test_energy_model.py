"""The energy model's formula, its presets and errors, the calibration blend, the grid series, and the catalog
taking its figure from the model unless one is set by hand."""

import pytest

from experts.catalog import ExpertSpec
from experts.energy_model import (
    EnergyModelSpec,
    GridIntensity,
    HardwareSpec,
    calibrated_j_per_token,
    estimate_energy,
)


def test_memory_bound_decode_on_an_a100():
    # 70B bf16 = 140 GB read per decode step; 0.6 x 2039 GB/s / 140 GB = 8.74 steps/s, x 8 sequences = 69.9 tok/s;
    # 0.75 x 400 W = 300 W -> 4.29 J/token.
    e = estimate_energy(70, EnergyModelSpec(hardware="a100-80gb"))
    assert e.throughput_from == "memory_bound_decode"
    assert e.tokens_per_s == pytest.approx(0.6 * 2039 / 140 * 8)
    assert e.j_per_token == pytest.approx(300 / (0.6 * 2039 / 140 * 8))
    # Energy per token scales with parameters and precision, and falls with more sequences per weight read.
    small = estimate_energy(7, EnergyModelSpec(hardware="a100-80gb")).j_per_token
    assert e.j_per_token == pytest.approx(10 * small)
    awq = estimate_energy(70, EnergyModelSpec(hardware="a100-80gb", bytes_per_param=0.5)).j_per_token
    assert awq == pytest.approx(e.j_per_token / 4)
    wide = estimate_energy(70, EnergyModelSpec(hardware="a100-80gb", concurrent_sequences=16)).j_per_token
    assert wide == pytest.approx(e.j_per_token / 2)


def test_a_measured_throughput_replaces_the_bound():
    cpu = HardwareSpec(kind="cpu", name="2 cores", power_w=20, power_fraction=1.0, tokens_per_s=10)
    e = estimate_energy(0.135, EnergyModelSpec(hardware=cpu))
    assert e.throughput_from == "measured" and e.j_per_token == pytest.approx(2.0)


def test_bad_hardware_is_refused_with_the_options():
    with pytest.raises(ValueError, match="unknown hardware preset 'a9000'.*a100-80gb"):
        EnergyModelSpec(hardware="a9000")
    with pytest.raises(ValueError, match="memory_bandwidth_gb_s .* or tokens_per_s"):
        HardwareSpec(kind="cpu", name="x", power_w=10)
    with pytest.raises(ValueError, match="params_b"):
        estimate_energy(0, EnergyModelSpec(hardware="l4"))


def test_calibration_moves_from_the_model_to_the_measurement():
    assert calibrated_j_per_token(1.0, 0.0, 0, 2000) == 1.0  # nothing measured
    assert calibrated_j_per_token(1.0, 3.0 * 2000, 2000, 2000) == pytest.approx(2.0)  # equal weights
    assert calibrated_j_per_token(1.0, 3.0 * 1e6, 10**6, 2000) == pytest.approx(3.0, rel=1e-2)


def test_grid_intensity_daily_profile_and_series(tmp_path):
    daily = tmp_path / "daily.csv"
    daily.write_text("hour_utc,g_per_kwh\n" + "".join(f"{h},{100 + h}\n" for h in range(24)))
    grid = GridIntensity.from_file(daily)
    assert grid.at(0) == 100 and grid.at(5 * 3600 + 10) == 105 and grid.at(86400 + 23 * 3600) == 123
    assert grid.constant == pytest.approx(111.5)
    series = tmp_path / "series.csv"
    series.write_text("timestamp,g_per_kwh\n1970-01-01T00:00:00Z,300\n1970-01-01T01:00:00Z,50\n")
    grid = GridIntensity.from_file(series)
    assert grid.at(-5) == 300 and grid.at(1800) == 300 and grid.at(3600) == 50 and grid.at(10**9) == 50
    assert GridIntensity(400).at(123) == 400


@pytest.mark.parametrize(
    "text, match",
    [
        ("hour,g\n1,2\n", "must have columns"),
        ("hour_utc,g_per_kwh\n0,100\n", "each hour 0-23 once"),
        ("timestamp,g_per_kwh\n1970-01-01T01:00:00,1\n1970-01-01T00:00:00,1\n", "must increase"),
        ("timestamp,g_per_kwh\nyesterday,1\n", "line 2"),
        ("timestamp,g_per_kwh\n1970-01-01T00:00:00,-1\n", "must be positive"),
    ],
)
def test_a_bad_grid_file_names_the_problem(tmp_path, text, match):
    p = tmp_path / "grid.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        GridIntensity.from_file(p)
    with pytest.raises(ValueError, match="does not exist"):
        GridIntensity.from_file(tmp_path / "missing.csv")


FIELDS = dict(
    name="e",
    backend={"kind": "replay", "data": "x.csv", "model": "m"},
    params_b=70,
    price_in_per_1k=0.001,
    price_out_per_1k=0.002,
    expected_latency_s=1,
    quality_prior=0.5,
)


def test_the_catalog_takes_its_figure_from_the_model_unless_set_by_hand():
    modelled = ExpertSpec(**FIELDS, energy={"hardware": "a100-80gb"})
    assert modelled.energy_from_model
    assert modelled.energy_per_token_j == pytest.approx(estimate_energy(70, modelled.energy).j_per_token)
    assert ExpertSpec.model_validate(modelled.model_dump()).energy_per_token_j == modelled.energy_per_token_j
    by_hand = ExpertSpec(**FIELDS, energy_per_token_j=4.0, energy={"hardware": "a100-80gb"})
    assert by_hand.energy_per_token_j == 4.0 and not by_hand.energy_from_model
    assert by_hand.modelled_j_per_token == modelled.energy_per_token_j
    with pytest.raises(ValueError, match="give energy_per_token_j, or `energy"):
        ExpertSpec(**FIELDS)
