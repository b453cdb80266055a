"""The circuit breaker on a fake clock: opens after N failures in the window, cools down, lets one probe through."""

import pytest

from serve_app.circuit_breaker import CircuitBreaker, CircuitBreakers, CircuitState
from serve_app.config import CircuitBreakerConfig


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def breaker(**kw) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    config = CircuitBreakerConfig(**{"failures": 3, "window_s": 10, "cooldown_s": 5, **kw})
    return CircuitBreaker(config, clock), clock


def test_opens_after_n_failures_within_the_window_and_skips_calls():
    b, clock = breaker()
    for _ in range(2):
        b.failure()
        assert b.allow() and b.state is CircuitState.CLOSED
    b.failure()
    assert b.state is CircuitState.OPEN and not b.allow() and b.skipped == 1 and b.opened == 1
    assert b.retry_in_s() == pytest.approx(5)
    clock.t += 2
    assert b.retry_in_s() == pytest.approx(3) and not b.allow()


def test_failures_older_than_the_window_do_not_count():
    b, clock = breaker()
    b.failure()
    b.failure()
    clock.t += 11
    b.failure()
    assert b.state is CircuitState.CLOSED and b.snapshot()["recent_failures"] == 1


def test_a_success_forgets_the_failures():
    b, _ = breaker()
    b.failure()
    b.failure()
    b.success()
    b.failure()
    assert b.state is CircuitState.CLOSED


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes():
    b, clock = breaker()
    for _ in range(3):
        b.failure()
    clock.t += 5
    assert b.state is CircuitState.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # others wait for its verdict
    b.success()
    assert b.state is CircuitState.CLOSED and b.allow()


def test_a_failed_probe_opens_the_circuit_for_another_cooldown():
    b, clock = breaker()
    for _ in range(3):
        b.failure()
    clock.t += 5
    assert b.allow()
    b.failure()
    assert b.state is CircuitState.OPEN and b.opened == 2 and not b.allow()
    clock.t += 5
    assert b.allow()


def test_a_probe_without_a_verdict_lets_another_through():
    b, clock = breaker()
    for _ in range(3):
        b.failure()
    clock.t += 5
    assert b.allow() and not b.allow()
    b.release_probe()
    assert b.allow()


def test_late_failures_of_calls_started_before_it_opened_do_not_extend_the_cooldown():
    b, clock = breaker()
    for _ in range(3):
        b.failure()
    clock.t += 4
    b.failure()
    clock.t += 1
    assert b.state is CircuitState.HALF_OPEN


def test_a_disabled_breaker_never_opens():
    b, _ = breaker(enabled=False)
    for _ in range(10):
        b.failure()
    assert b.allow() and b.state is CircuitState.CLOSED


def test_the_set_reports_each_state_change_once_and_survives_a_failing_hook():
    clock = Clock()
    seen = []
    config = CircuitBreakerConfig(failures=1, window_s=10, cooldown_s=5)
    breakers = CircuitBreakers(["a", "b"], config, on_change=lambda n, s: seen.append((n, s.value)), clock=clock)
    breakers.failure("a")
    clock.t += 5
    assert breakers.allow("a")
    breakers.success("a")
    assert seen == [("a", "open"), ("a", "half_open"), ("a", "closed")]
    assert breakers.states() == {"a": "closed", "b": "closed"}

    def broken(name, state):
        raise RuntimeError("metrics down")

    breakers.on_change = broken
    breakers.failure("b")  # the hook fails; the breaker still opens
    assert breakers.states()["b"] == "open" and breakers.snapshot("b")["state"] == "open"


@pytest.mark.parametrize("field, value", [("failures", 0), ("window_s", 0), ("cooldown_s", -1), ("typo", 1)])
def test_bad_breaker_config_is_refused(field, value):
    with pytest.raises(ValueError):
        CircuitBreakerConfig(**{field: value})
