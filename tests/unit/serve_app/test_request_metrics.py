"""Request metrics read the typed routing metadata, and a broken exporter never fails a request."""

import logging

from serve_app.request_metrics import RequestMetrics
from serve_app.responses import RoutingMetadata
from serve_app.routed_request import ExpertAnswer, ExpertFailure

from .fakes import catalog, result, routed


class Recorder:
    """Counter and Histogram stand-in keeping every call."""

    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, []

    def inc(self, value, tags):
        self._keep(value, tags)

    def observe(self, value, tags):
        self._keep(value, tags)

    def _keep(self, value, tags):
        if self.fail:
            raise RuntimeError("exporter down")
        self.calls.append((value, tags))


def metrics(fail: bool = False) -> RequestMetrics:
    m = RequestMetrics()
    for name in ("requests", "failures", "cost", "carbon", "latency"):
        setattr(m, name, Recorder(fail))
    return m


def test_answered_request_is_counted_with_its_figures():
    m = metrics()
    answer = ExpertAnswer.of("b", result(), catalog())
    meta = RoutingMetadata.of(routed(), "b", answer, [ExpertFailure(expert="a", error="E: x")], done=11.0)
    m.answered(meta)
    tags = {"strategy": "moe", "expert": "b"}
    assert m.requests.calls == [(1, tags)]
    assert m.cost.calls == [(answer.cost_usd, tags)] and m.carbon.calls == [(answer.carbon_g, tags)]
    assert m.latency.calls == [(1000.0, tags)]
    assert m.failures.calls == [(1, {"expert": "a"})]


def test_an_answer_without_totals_counts_the_request_only():
    m = metrics()
    m.answered(RoutingMetadata.of(routed(), "a"))
    assert len(m.requests.calls) == 1 and m.cost.calls == m.latency.calls == m.failures.calls == []


def test_a_broken_exporter_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger="serve_app.request_metrics"):
        metrics(fail=True).answered(RoutingMetadata.of(routed(), "a"))
    assert "metrics hook failed" in caplog.text
