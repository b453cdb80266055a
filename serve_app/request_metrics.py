"""Request metrics exported through ray.util.metrics (Ray dashboard, Prometheus). Hooks never break a request."""

from __future__ import annotations

import logging

from serve_app.responses import RoutingMetadata

logger = logging.getLogger(__name__)


class RequestMetrics:
    """Counts and distributions per routed request, tagged by strategy and expert."""

    def __init__(self):
        from ray.util import metrics

        tags = ("strategy", "expert")
        self.requests = metrics.Counter("routerllm_requests", description="Answered chat requests.", tag_keys=tags)
        self.failures = metrics.Counter(
            "routerllm_expert_failures", description="Expert calls that failed.", tag_keys=("expert",)
        )
        self.cost = metrics.Histogram(
            "routerllm_request_cost_usd",
            description="Cost of one answered request (USD).",
            boundaries=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
            tag_keys=tags,
        )
        self.carbon = metrics.Histogram(
            "routerllm_request_carbon_g",
            description="Estimated emissions of one answered request (gCO2eq).",
            boundaries=[1e-4, 1e-3, 1e-2, 1e-1, 1, 10],
            tag_keys=tags,
        )
        self.latency = metrics.Histogram(
            "routerllm_request_latency_ms",
            description="End-to-end latency of one answered request (ms).",
            boundaries=[5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000],
            tag_keys=tags,
        )

    def answered(self, routing: RoutingMetadata) -> None:
        """Count one answered request; a failure to export is logged, never raised into the request."""
        try:
            tags = {"strategy": str(routing.strategy), "expert": str(routing.expert)}
            self.requests.inc(1, tags)
            if routing.cost_usd is not None:
                self.cost.observe(routing.cost_usd, tags)
                self.carbon.observe(routing.carbon_g, tags)
            total = routing.latency_ms.get("total")
            if total is not None:
                self.latency.observe(total, tags)
            for failure in routing.failover_from or []:
                self.failures.inc(1, {"expert": failure.expert})
        except Exception as e:  # noqa: BLE001 - metrics must never fail a request
            logger.warning("metrics hook failed: %r", e)
