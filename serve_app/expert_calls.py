"""One expert call under the request's rules: a timeout per attempt, one deadline for the whole chain, retries with
backoff on transient errors only, and the expert's circuit breaker told of every verdict.

serve_app.dispatch decides which experts to call and in what order; `ExpertCaller` calls one of them. The kinds
of failure are experts.base.ExpertError's: "transient" is retried, "auth" and "internal" are not but count
against the circuit, "request" (the endpoint refused this request as malformed) neither.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ray.exceptions
import ray.serve.exceptions
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from experts.base import ExpertError, GenerationRequest, GenerationResult, StreamChunk
from serve_app.circuit_breaker import STATE_CODES, CircuitBreakers, CircuitState
from serve_app.config import ServerConfig

logger = logging.getLogger("routerllm.ingress")

T = TypeVar("T")

# Errors of a replica or its handle that another try may not meet (the replica died, is restarting, is full).
TRANSIENT_RAY_ERRORS: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
    ray.serve.exceptions.BackPressureError,
    ray.serve.exceptions.DeploymentUnavailableError,
)
COUNTED = ("transient", "auth", "internal")
"""Kinds of failure that count against an expert's circuit."""


class DeadlineExceededError(TimeoutError):
    """The request's deadline (`request_deadline_s`) passed before an expert answered."""


class CircuitOpenError(RuntimeError):
    """The expert's circuit is open: it was skipped without a call."""


class EmptyStreamError(RuntimeError):
    """The expert's stream ended before its first piece."""


def error_kind(e: BaseException) -> str:
    """An expert call's failure as an ExpertError kind: the backend's own, else transient for timeouts and dead or
    busy replicas, else internal."""
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, ExpertError):
        return cause.kind
    if isinstance(e, (TimeoutError, *TRANSIENT_RAY_ERRORS)):
        return "transient"
    return "internal"


def circuit_metric() -> Any:
    """Ray's gauge of each expert's circuit (0 closed, 1 half-open, 2 open), or None where metrics are off."""
    try:
        from ray.util.metrics import Gauge

        return Gauge(
            "routerllm_expert_circuit_state",
            description="Circuit of each expert in this ingress replica: 0 closed, 1 half-open, 2 open.",
            tag_keys=("expert",),
        )
    except Exception as e:  # noqa: BLE001 - metrics must never stop the ingress
        logger.warning("circuit metric unavailable: %r", e)
        return None


class ExpertCaller:
    """The expert handles of one ingress replica, their circuit breakers, and the attempt rules of ServerConfig."""

    def __init__(self, server: ServerConfig, experts: dict[str, DeploymentHandle]):
        self.server = server
        self.experts = experts
        self.gauge = circuit_metric()
        self.breakers = CircuitBreakers(list(experts), server.circuit_breaker, on_change=self._report)
        for name in experts:
            self._set_gauge(name, CircuitState.CLOSED)

    def _report(self, expert: str, state: CircuitState) -> None:
        logger.warning("circuit of expert %s is now %s", expert, state.value)
        self._set_gauge(expert, state)

    def _set_gauge(self, expert: str, state: CircuitState) -> None:
        if self.gauge is not None:
            try:
                self.gauge.set(STATE_CODES[state], tags={"expert": expert})
            except Exception as e:  # noqa: BLE001 - metrics must never fail a request
                logger.warning("circuit metric export failed: %r", e)

    def deadline(self, started: float) -> float:
        """The perf_counter time by which a request that arrived at `started` must be answered."""
        return started + self.server.request_deadline_s

    def attempt_timeout(self, deadline: float, limit: float | None = None) -> float:
        """Seconds the next attempt may take: `limit` (default request_timeout_s), never past the deadline."""
        left = deadline - time.perf_counter()
        if left <= 0:
            raise DeadlineExceededError(f"the request's deadline of {self.server.request_deadline_s:g} s has passed")
        return min(limit or self.server.request_timeout_s, left)

    def admit(self, expert: str) -> None:
        """CircuitOpenError unless the expert's circuit lets a call through now."""
        if not self.breakers.allow(expert):
            breaker = self.breakers[expert]
            raise CircuitOpenError(
                f"circuit open after {self.server.circuit_breaker.failures} failures; "
                f"next probe in {breaker.retry_in_s():.1f} s"
            )

    def verdict(self, expert: str, error: BaseException | None) -> None:
        """Tell the expert's circuit how a call ended (None: it answered)."""
        if error is None:
            self.breakers.success(expert)
        elif error_kind(error) in COUNTED:
            self.breakers.failure(expert)
        else:
            self.breakers[expert].release_probe()

    async def _with_retries(self, expert: str, deadline: float, attempt: Callable[[float], Awaitable[T]]) -> T:
        """Run `attempt(timeout)` until it answers, retrying transient failures `retries` times with doubling
        backoff (and jitter) while the deadline and the circuit allow; the last failure is raised."""
        self.admit(expert)
        for tried in range(self.server.retries + 1):
            try:
                result = await attempt(self.attempt_timeout(deadline))
            except asyncio.CancelledError:
                self.breakers[expert].release_probe()
                raise
            except DeadlineExceededError:
                self.breakers[expert].release_probe()
                raise
            except Exception as e:  # noqa: BLE001 - classified, counted, then retried or raised
                self.verdict(expert, e)
                pause = self.server.retry_backoff_s * 2**tried * random.uniform(0.5, 1.0)
                if error_kind(e) != "transient" or tried == self.server.retries:
                    raise
                if time.perf_counter() + pause >= deadline or not self.breakers.allow(expert):
                    raise
                logger.info("retrying expert %s in %.2f s after %r", expert, pause, e)
                await asyncio.sleep(pause)
                continue
            self.verdict(expert, None)
            return result
        raise AssertionError("unreachable")

    async def generate(self, expert: str, req: GenerationRequest, deadline: float) -> GenerationResult:
        """One expert's whole answer under the attempt rules."""
        handle = self.experts[expert]
        return await self._with_retries(
            expert, deadline, lambda timeout: asyncio.wait_for(handle.generate.remote(req), timeout)
        )

    async def open_stream(
        self, expert: str, req: GenerationRequest, deadline: float
    ) -> tuple[DeploymentResponseGenerator, StreamChunk]:
        """Start one expert's stream and wait for its first piece under the attempt rules (nothing has been sent
        to the client yet, so a failure here may still be retried or failed over)."""

        async def attempt(timeout: float) -> tuple[DeploymentResponseGenerator, StreamChunk]:
            stream = self.experts[expert].options(stream=True).stream.remote(req)
            try:
                return stream, await asyncio.wait_for(stream.__anext__(), timeout)
            except StopAsyncIteration as e:
                stream.cancel()
                raise EmptyStreamError("the stream ended before its first piece") from e
            except BaseException:
                stream.cancel()
                raise

        return await self._with_retries(expert, deadline, attempt)

    async def next_piece(self, stream: DeploymentResponseGenerator, deadline: float) -> StreamChunk | None:
        """The stream's next piece, None at its end; TimeoutError when it stalls past stream_idle_timeout_s or
        the deadline (the stream is cancelled then)."""
        timeout = 0.0
        try:
            timeout = self.attempt_timeout(deadline, self.server.stream_idle_timeout_s)
            return await asyncio.wait_for(stream.__anext__(), timeout)
        except StopAsyncIteration:
            return None
        except DeadlineExceededError:
            stream.cancel()
            raise
        except TimeoutError as e:
            stream.cancel()
            if timeout < self.server.stream_idle_timeout_s:
                raise DeadlineExceededError(
                    f"the request's deadline of {self.server.request_deadline_s:g} s passed mid-stream"
                ) from e
            raise TimeoutError(f"the stream stalled: no piece for {timeout:.3g} s") from e
        except BaseException:
            stream.cancel()
            raise

    def snapshot(self, expert: str) -> dict[str, Any]:
        """The expert's circuit for /v1/experts."""
        return self.breakers.snapshot(expert)

    def states(self) -> dict[str, str]:
        """{expert: circuit state} for /healthz."""
        return self.breakers.states()
