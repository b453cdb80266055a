"""The expert deployment takes its ExpertSpec (which computes its Serve options) and the carbon settings."""

import asyncio

import pytest

from experts import expert_deployment
from experts.carbon_meter import CarbonConfig
from experts.catalog import ExpertSpec


def spec(**kw) -> ExpertSpec:
    fields = dict(
        name="e",
        backend={"kind": "replay", "data": "x.csv", "model": "m"},
        params_b=1,
        price_in_per_1k=0.001,
        price_out_per_1k=0.002,
        energy_per_token_j=1,
        expected_latency_s=1,
        quality_prior=0.5,
    )
    return ExpertSpec(**{**fields, **kw})


def test_spec_computes_the_deployment_options():
    assert spec().deployment_options() == {
        "name": "expert_e",
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0.0},
        "max_ongoing_requests": 64,
    }
    options = spec(num_replicas=2, num_gpus=1, num_cpus=4, max_ongoing_requests=8).deployment_options()
    assert options == {
        "name": "expert_e",
        "num_replicas": 2,
        "ray_actor_options": {"num_cpus": 4.0, "num_gpus": 1.0},
        "max_ongoing_requests": 8,
    }
    with pytest.raises(ValueError, match="num_gpus"):
        spec(num_gpus=-1)


class Meter:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def stop(self):
        pass


class StartedBackend:
    def __init__(self, spec):
        self.spec, self.started = spec, False

    async def start(self):
        self.started = True


@pytest.mark.parametrize("measure", [True, False])
def test_deployment_reads_the_carbon_settings(monkeypatch, measure):
    monkeypatch.setattr(expert_deployment, "build_backend", StartedBackend)
    monkeypatch.setattr(expert_deployment, "CarbonMeter", Meter)
    carbon = CarbonConfig(country_iso_code="FRA", measure_with_codecarbon=measure, measure_interval_s=3)

    async def main():
        replica = expert_deployment.ExpertDeployment.__new__(expert_deployment.ExpertDeployment)
        await replica.__init__(spec(), carbon=carbon)  # async __init__, as Serve calls it
        return replica

    replica = asyncio.run(main())
    assert replica.backend.started and replica.spec.name == "e"
    if measure:
        assert replica.meter.args == ("FRA",) and replica.meter.kwargs == {"interval_s": 3.0, "project": "routerllm-e"}
    else:
        assert replica.meter is None
