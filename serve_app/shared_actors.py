"""The named, detached Ray actors that every ingress replica shares (the budget ledger, the rate limiter).

One rule for both: created by the first replica that asks, found by the others (`get_if_exists`), detached so
that it outlives a redeploy, restarted by Ray if its process dies (its state then starts empty), and holding no
CPU of its own (it only keeps accounts).
"""

from __future__ import annotations

from typing import Any


def shared_actor(cls: type, name: str, namespace: str, *args: Any) -> Any:
    """The handle of the shared actor `name` in `namespace`, created from `cls(*args)` if it does not exist yet."""
    import ray

    return (
        ray.remote(cls)
        .options(
            name=name,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            num_cpus=0,
        )
        .remote(*args)
    )
