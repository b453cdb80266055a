"""What both serving benchmarks share: a free port, latency summaries and the direct-ingress address of an app."""

from __future__ import annotations

import socket
import statistics


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values`, linearly interpolated between neighbours."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    """p50, p99 and mean of latencies in milliseconds, to 2 decimals."""
    return {
        "p50": round(statistics.median(values), 2),
        "p99": round(percentile(values, 0.99), 2),
        "mean": round(statistics.fmean(values), 2),
    }


def direct_ingress_url(app_name: str, proxy_port: int) -> str | None:
    """The address at which the app's ingress replica takes HTTP itself (Serve's direct ingress), if it does.

    Serve has no public call for this yet; the controller's target groups are what a load balancer reads.
    """
    import ray
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    groups = ray.get(controller.get_target_groups.remote(app_name))
    for group in groups:
        for target in group.targets:
            if group.protocol == "HTTP" and target.port != proxy_port:  # not the proxy's own fallback target
                return f"http://127.0.0.1:{target.port}"  # single-node bench; Serve binds it like the proxy
    return None


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (other work on the machine shows in every figure)."""
    import os

    return [round(x, 2) for x in os.getloadavg()]
