"""Hot-swap: router replicas pull new policy weights from the learner actor by version.

The learner publishes versioned policies; every replica polls `live_versions()` and, when a strategy's live
version differs from the one it serves (a publish or a rollback), fetches that version's weights, loads them into a
copy of the strategy and swaps the copy in with one reference assignment, so a request in flight finishes on the
policy it started with and none fails. The replica then acks, so the learner can time how long a publish takes to
reach every replica. A missing or dead learner never stops routing: the replica keeps its current policy.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from collections.abc import Callable

import numpy as np

from router_deployments.strategies import RoutingStrategy

logger = logging.getLogger(__name__)


def policy_copy(
    strategy: RoutingStrategy, version: int, arrays: dict[str, np.ndarray], settings: dict | None = None
) -> RoutingStrategy:
    """A copy of `strategy` holding the pulled weights and routing settings (e.g. epsilon), ready to swap in."""
    import torch

    fresh = copy.deepcopy(strategy)
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, version=version)
    fresh.policy_version = version
    update = {k: v for k, v in (settings or {}).items() if k in type(fresh.config).model_fields}
    if update:
        fresh.config = fresh.config.model_copy(update=update)
    return fresh


class PolicySync:
    """One per router replica. `strategies` is the replica's live name -> strategy dict, swapped in place."""

    def __init__(
        self,
        strategies: dict[str, RoutingStrategy],
        get_learner: Callable[[], object],
        poll_interval_s: float = 0.2,
        replica_id: str | None = None,
    ):
        self.strategies = strategies
        self.get_learner = get_learner
        self.poll_interval_s = poll_interval_s
        self.replica_id = replica_id or uuid.uuid4().hex[:8]
        self.learnable = [n for n, s in strategies.items() if s.learnable]
        self.swaps = 0
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start polling in the running event loop (call from the replica's async constructor)."""
        if self.learnable and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_once()
                self.last_error = None
            except Exception as e:  # noqa: BLE001 - the learner may be restarting; keep serving and retry
                if self.last_error is None:
                    logger.warning("policy sync with the learner failed (will retry): %r", e)
                self.last_error = repr(e)
            await asyncio.sleep(self.poll_interval_s)

    async def sync_once(self) -> list[tuple[str, int]]:
        """Bring every learnable strategy to the learner's live version; returns what was swapped."""
        learner = self.get_learner()
        live: dict[str, int] = await learner.live_versions.remote()
        swapped = []
        for name in self.learnable:
            version = live.get(name)
            if version is None or version == self.strategies[name].policy_version:
                continue
            policy = await learner.get_policy.remote(name, self.strategies[name].policy_version)
            if policy is None:
                continue
            got_version, arrays = policy
            settings = await learner.routing_settings.remote(name)
            fresh = policy_copy(self.strategies[name], got_version, arrays, settings)
            self.strategies[name] = fresh  # one assignment: requests see the old or the new policy, whole
            self.swaps += 1
            swapped.append((name, got_version))
            await learner.ack.remote(self.replica_id, name, got_version, time.time())
        return swapped

    def versions(self) -> dict[str, int]:
        """Policy version this replica serves, per learnable strategy."""
        return {n: self.strategies[n].policy_version for n in self.learnable}
