"""A circuit breaker per expert, so that a dead expert is not tried again by every request that picks it.

States (Envoy's and LiteLLM's cooldown idea, in the classic closed / open / half-open form):

- closed: calls go through; each failure is remembered for `window_s`. `failures` of them within the window open
  the circuit.
- open: the expert is skipped (dispatch fails over at once) until `cooldown_s` have passed.
- half-open: one probe call is let through; its success closes the circuit, its failure opens it for another
  cooldown. Other calls keep skipping the expert while the probe is out.

Each ingress replica keeps its own breakers (no shared state: a replica learns about a dead expert from its own
calls, after at most `failures` of them). Pure Python with an injectable clock: no Ray, no I/O.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from serve_app.config import CircuitBreakerConfig

logger = logging.getLogger("routerllm.ingress")


class CircuitState(str, Enum):
    """Where one expert's circuit stands; the value is what /healthz and /v1/experts show."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


STATE_CODES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
"""The metric's value of each state (routerllm_expert_circuit_state)."""


class CircuitBreaker:
    """One expert's breaker. `allow()` before a call, then `success()` or `failure()` after it."""

    def __init__(self, config: CircuitBreakerConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self._failures: deque[float] = deque()
        self._state = CircuitState.CLOSED
        self._opened_at = 0.0
        self._probe_out = False
        self.opened = 0
        """How many times the circuit has opened (a half-open probe that fails counts again)."""
        self.skipped = 0
        """Calls refused while open or while the probe was out."""

    @property
    def state(self) -> CircuitState:
        """The state now; an open circuit whose cooldown is over reads half-open."""
        if self._state is CircuitState.OPEN and self.clock() - self._opened_at >= self.config.cooldown_s:
            self._state = CircuitState.HALF_OPEN
            self._probe_out = False
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the expert now (in half-open: True once, for the probe)."""
        if not self.config.enabled:
            return True
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        self.skipped += 1
        return False

    def success(self) -> None:
        """A call answered: a half-open circuit closes, and the failures counted so far are forgotten."""
        self._failures.clear()
        self._state = CircuitState.CLOSED
        self._probe_out = False

    def failure(self) -> None:
        """A call failed: a failed probe reopens the circuit; `failures` within the window open it."""
        if not self.config.enabled:
            return
        now = self.clock()
        state = self.state
        if state is CircuitState.OPEN:  # a call that started before the circuit opened: already counted
            return
        if state is CircuitState.HALF_OPEN:
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.config.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.config.failures:
            self._open(now)

    def _open(self, now: float) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = now
        self._probe_out = False
        self._failures.clear()
        self.opened += 1

    def release_probe(self) -> None:
        """The probe call ended without a verdict (cancelled, or a request error): let another probe through."""
        self._probe_out = False

    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self.config.cooldown_s - (self.clock() - self._opened_at))

    def snapshot(self) -> dict[str, Any]:
        """What /healthz and /v1/experts show of it."""
        state = self.state
        return {
            "state": state.value,
            "recent_failures": len(self._failures),
            "opened": self.opened,
            "skipped": self.skipped,
            "retry_in_s": round(self.retry_in_s(), 3),
        }


class CircuitBreakers:
    """The breakers of every expert of one ingress replica, and an optional hook told of each state change."""

    def __init__(
        self,
        names: list[str],
        config: CircuitBreakerConfig,
        on_change: Callable[[str, CircuitState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.breakers = {name: CircuitBreaker(config, clock) for name in names}
        self._reported = {name: CircuitState.CLOSED for name in names}
        self.on_change = on_change

    def __getitem__(self, name: str) -> CircuitBreaker:
        return self.breakers[name]

    def allow(self, name: str) -> bool:
        """CircuitBreaker.allow of `name`'s breaker, telling the hook if the state moved (open -> half-open)."""
        return self._watch(name, lambda b: b.allow())

    def success(self, name: str) -> None:
        """CircuitBreaker.success of `name`'s breaker."""
        self._watch(name, lambda b: b.success())

    def failure(self, name: str) -> None:
        """CircuitBreaker.failure of `name`'s breaker."""
        self._watch(name, lambda b: b.failure())

    def _watch(self, name: str, action: Callable[[CircuitBreaker], Any]) -> Any:
        breaker = self.breakers[name]
        result = action(breaker)
        after = breaker.state
        # Against the last state reported, not the one before `action`: open turns half-open on a mere read.
        if after is not self._reported[name] and self.on_change is not None:
            self._reported[name] = after
            try:
                self.on_change(name, after)
            except Exception as e:  # noqa: BLE001 - a metrics hook must never break a request
                logger.warning("circuit state hook failed: %r", e)
        return result

    def states(self) -> dict[str, str]:
        """{expert: state} for /healthz."""
        return {name: b.state.value for name, b in self.breakers.items()}

    def snapshot(self, name: str) -> dict[str, Any]:
        """One expert's breaker for /v1/experts."""
        return self.breakers[name].snapshot()
