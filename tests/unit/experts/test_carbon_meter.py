"""codecarbon in process mode, read through its public API: a process that works reports growing energy; a
replica attaches each call's energy and reports measured beside modelled figures."""

import asyncio
import time

from experts.carbon_meter import CarbonConfig, CarbonMeter
from experts.catalog import ExpertSpec
from experts.expert_deployment import ExpertDeployment


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(5000))


def test_the_meter_measures_this_process_and_grows_with_work():
    meter = CarbonMeter("USA", interval_s=1)
    try:
        assert meter.active
        first = meter.snapshot()
        burn(1.5)
        second = meter.snapshot()
    finally:
        meter.stop()
    assert first["tracking_mode"] == "process" and second["tracking_mode"] == "process"
    assert second["energy_kwh"] > first["energy_kwh"] >= 0 and second["cpu_kwh"] > 0
    assert second["emissions_g"] > 0


def test_a_replica_charges_each_call_and_reports_measured_beside_modelled():
    spec = ExpertSpec(
        name="fake",
        backend={"kind": "vllm", "model": "packaged:all-minilm-l6-v2", "engine_module": "experts.fake_vllm"},
        params_b=7,
        price_in_per_1k=0.0,
        price_out_per_1k=0.0,
        energy={"hardware": "l4"},
        expected_latency_s=1,
        quality_prior=0.5,
        max_new_tokens=4,
    )
    carbon = CarbonConfig(measure_interval_s=0.5, calibration_prior_tokens=1)

    async def main():
        from experts.base import GenerationRequest

        replica = ExpertDeployment.__new__(ExpertDeployment)
        await replica.__init__(spec, carbon=carbon)
        results = []
        for i in range(3):
            results.append(await replica.generate(GenerationRequest(messages=[{"role": "user", "content": f"hi {i}"}])))
            burn(0.3)
        return replica, results, replica.stats()

    replica, results, stats = asyncio.run(main())
    replica.meter.stop()
    first = results[0]
    assert first.extra["energy_j"] == spec.energy_per_token_j * (first.tokens_in + first.tokens_out)
    assert stats["calls"] == 3 and stats["modelled"]["source"] == "energy model"
    assert stats["modelled"]["j_per_token"] == spec.energy_per_token_j
    assert stats["energy_kwh"] > 0 and stats["measured_j_per_token"] > 0
    # With a prior of one token, the calibrated figure is (almost) the measured one.
    assert stats["calibrated_j_per_token"] != spec.energy_per_token_j
