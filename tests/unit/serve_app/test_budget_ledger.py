"""The budget ledger: reserve-then-settle, downgrade, refusal with Retry-After, the greenest policy, per-caller
scopes, the rolling window, expiring reservations, and reservations scaled by what experts really charged."""

import pytest

from serve_app.budget_ledger import BudgetLedger, BudgetLimits, Option


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def ledger(total=None, per_caller=None, window_s=100.0, clock=None):
    return BudgetLedger(
        BudgetLimits(**(total or {})), BudgetLimits(**(per_caller or {})), window_s, 60.0, clock or Clock()
    )


BIG = Option(experts=["big"], carbon_g=4.0, cost_usd=0.0)
SMALL = Option(experts=["small"], carbon_g=1.0, cost_usd=0.0)


def test_reserve_settle_and_the_state_it_leaves():
    led = ledger({"carbon_g": 10.0})
    r = led.reserve("r1", None, [BIG, SMALL], greenest=False)
    assert r.status == "reserved" and r.experts == ["big"]
    (line,) = r.state.lines
    assert (line.spent, line.reserved, line.left) == (0.0, 4.0, 6.0) and line.left_fraction == pytest.approx(0.6)
    state = led.settle("r1", None, {"big": (3.0, 0.0)})
    assert (state.lines[0].spent, state.lines[0].reserved) == (3.0, 0.0)
    assert state.left_fraction("carbon_g") == pytest.approx(0.7) and state.left_fraction("cost_usd") == 1.0


def test_downgrade_then_refusal_with_the_time_until_spend_rolls_off():
    clock = Clock()
    led = ledger({"carbon_g": 5.0}, clock=clock)
    led.reserve("a", None, [BIG], greenest=False)
    led.settle("a", None, {"big": (4.0, 0.0)})
    clock.t += 30
    r = led.reserve("b", None, [BIG, SMALL], greenest=False)
    assert r.status == "downgraded" and r.experts == ["small"] and r.exhausted == ["total carbon_g"]
    led.settle("b", None, {"small": (1.0, 0.0)})
    refused = led.reserve("c", None, [BIG, SMALL], greenest=False)
    assert refused.status == "refused" and refused.experts == []
    # 1 g must free up: the first charge (4 g, 30 s ago) leaves the 100 s window in 70 s.
    assert refused.retry_after_s == pytest.approx(70.0)
    clock.t += 71
    assert led.reserve("d", None, [BIG, SMALL], greenest=False).status == "reserved"


def test_the_greenest_policy_serves_over_budget():
    led = ledger({"carbon_g": 0.5})
    r = led.reserve("a", None, [BIG, SMALL], greenest=True)
    assert r.status == "over_budget" and r.experts == ["small"]


def test_release_frees_the_reservation_and_stale_ones_expire():
    clock = Clock()
    led = ledger({"carbon_g": 4.0}, clock=clock)
    led.reserve("a", None, [BIG], greenest=False)
    assert led.reserve("b", None, [BIG], greenest=False).status == "refused"
    assert led.release("a") and not led.release("a")
    led.reserve("c", None, [BIG], greenest=False)
    clock.t += 61  # the ingress that held it died: the reservation expires
    assert led.reserve("d", None, [BIG], greenest=False).status == "reserved"


def test_callers_have_their_own_limits_beside_the_total():
    led = ledger({"carbon_g": 100.0}, {"carbon_g": 5.0})
    led.reserve("a", "alice", [BIG], greenest=False)
    led.settle("a", "alice", {"big": (4.0, 0.0)})
    assert led.reserve("b", "alice", [BIG], greenest=False).status == "refused"
    r = led.reserve("c", "bob", [BIG], greenest=False)
    assert r.status == "reserved" and [(x.scope, x.spent) for x in r.state.lines] == [("total", 4.0), ("caller", 0.0)]


def test_cost_limits_block_like_carbon_limits():
    led = ledger({"cost_usd": 0.01})
    pricey = Option(experts=["big"], carbon_g=0.0, cost_usd=0.02)
    r = led.reserve("a", None, [pricey, Option(experts=["small"], carbon_g=0.0, cost_usd=0.001)], greenest=False)
    assert r.status == "downgraded" and r.exhausted == ["total cost_usd"]


def test_reservations_grow_with_what_an_expert_really_charged():
    led = ledger({"carbon_g": 10.0})
    led.reserve("a", None, [SMALL], greenest=False)
    led.settle("a", None, {"small": (3.0, 0.0)})  # three times its prediction
    r = led.reserve("b", None, [SMALL], greenest=False)
    assert r.state.lines[0].reserved == pytest.approx(3.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="window_s"):
        ledger(window_s=0)
    with pytest.raises(ValueError, match="at least one option"):
        ledger().reserve("a", None, [], greenest=False)
    with pytest.raises(ValueError):
        Option(experts=[], carbon_g=1, cost_usd=0)
