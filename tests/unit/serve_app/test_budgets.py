"""The ingress's side of budgets: the caller, steering, route fields, the 429 and the options it reserves."""

import json

import pytest

from router_deployments.objectives import ObjectiveWeights
from serve_app.api_models import ChatCompletionRequest
from serve_app.budget_ledger import BudgetLine, BudgetState, Reservation
from serve_app.budgets import BudgetExceededError, BudgetView, caller_of, pressure
from serve_app.config import BudgetConfig
from serve_app.errors import APIError


def body(**extra):
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **extra})


def test_the_caller_is_the_key_else_the_user_field():
    assert caller_of(body(user=" alice ")) == "alice" and caller_of(body()) is None
    assert caller_of(body(user="alice"), key_id="ab12") == "key:ab12"  # a key, where there are keys, wins
    for bad in ("", 5, "x" * 300):
        with pytest.raises(APIError, match="user must be"):
            caller_of(body(user=bad))


def state(left: float) -> BudgetState:
    line = BudgetLine(
        scope="total",
        dimension="carbon_g",
        limit=10,
        spent=10 - left * 10,
        reserved=0,
        left=left * 10,
        left_fraction=left,
    )
    return BudgetState(window_s=60, caller=None, lines=[line])


def test_pressure_and_steering_tighten_as_the_budget_drains():
    assert pressure(0.9, 0.5) == 0 and pressure(0.25, 0.5) == 0.5 and pressure(0.0, 0.5) == 1
    weights = ObjectiveWeights(quality=1, cost=0.2, carbon=0.1)
    settings = BudgetConfig(total={"carbon_g": 10}, steer_carbon_weight=2.0)
    full = BudgetView(settings, state(1.0), None, 1.0, 400)
    assert full.steered(weights) == weights
    drained = BudgetView(settings, state(0.25), None, 1.0, 400)
    assert drained.steered(weights).carbon == pytest.approx(0.1 + 2.0 * 0.5)
    assert drained.steered(weights).cost == 0.2  # no cost limit: its pressure stays 0
    # The client's own fraction tightens further, never loosens.
    assert BudgetView(settings, state(0.8), None, 0.3, 400).carbon_left == 0.3
    assert BudgetView(settings, state(0.3), None, 1.0, 400).route_fields() == {
        "carbon_budget_left": 0.3,
        "cost_budget_left": 1.0,
        "window_left": 1.0,
        "grid_intensity": 400,
    }


def test_metadata_says_unlimited_without_limits():
    view = BudgetView(BudgetConfig(), None, "bob", 0.7, 250)
    meta = view.metadata()
    assert meta.status == "unlimited" and meta.carbon_left_fraction == 0.7 and meta.lines == []
    assert BudgetView(BudgetConfig(), state(0.5), None, 1, 1).metadata("downgraded", ["big"]).downgraded_from == ["big"]


def test_the_429_carries_retry_after_and_its_code():
    refused = Reservation(
        status="refused", experts=[], retry_after_s=12.2, exhausted=["total carbon_g"], state=state(0.0)
    )
    response = BudgetExceededError(refused).response()
    assert response.status_code == 429 and response.headers["retry-after"] == "13"
    error = json.loads(response.body)["error"]
    assert error["code"] == "budget_exceeded" and "total carbon_g" in error["message"]


def test_the_options_reserved_are_the_fanout_then_each_candidate_with_its_predicted_charge():
    from serve_app.budgets import BudgetGate
    from serve_app.config import AppConfig
    from tests.unit.serve_app.fakes import catalog, routed

    config = AppConfig(experts=catalog().experts, budgets={"chars_per_token": 2.0})
    gate = BudgetGate(config)  # no limit set: no ledger actor
    assert gate.ledger is None
    request = routed()
    request.budget = BudgetView(config.budgets, None, None, 1.0, 800.0)  # twice the catalog's 400 g/kWh
    options = gate.options(request, ["a", "c", "b"], prompt_chars=20, max_tokens=4)
    assert [o.experts for o in options] == [["a"], ["c"], ["b"]]
    cat = config.catalog
    assert options[1].carbon_g == pytest.approx(2 * cat.carbon_g("c", 10, 4))
    assert options[1].cost_usd == pytest.approx(cat.cost_usd("c", 10, 4))


def test_a_ledger_that_cannot_answer_is_a_503():
    import asyncio

    from serve_app.budgets import BudgetGate
    from serve_app.config import AppConfig
    from tests.unit.serve_app.fakes import catalog

    gate = BudgetGate(AppConfig(experts=catalog().experts))

    async def dead():
        raise RuntimeError("actor died")

    with pytest.raises(APIError) as info:
        asyncio.run(gate._ask(dead()))
    assert info.value.status == 503 and info.value.code == "budget_unavailable" and "actor died" in info.value.message


def test_routing_follows_a_dirtier_grid(tmp_path):
    import asyncio
    import time as clock

    from serve_app.budgets import BudgetGate
    from serve_app.config import AppConfig
    from tests.unit.serve_app.fakes import catalog

    hour = int(clock.gmtime().tm_hour)
    grid = tmp_path / "grid.csv"  # this hour at 600 g/kWh, the others at 300: mean 312.5
    grid.write_text("hour_utc,g_per_kwh\n" + "".join(f"{h},{600 if h == hour else 300}\n" for h in range(24)))
    config = AppConfig(experts=catalog().experts, carbon={"grid_intensity_file": str(grid)})
    assert config.catalog.carbon_intensity_g_per_kwh == pytest.approx(312.5)
    view = asyncio.run(BudgetGate(config).view(None))
    assert view.grid_intensity == 600 and view.route_fields()["grid_intensity"] == 600
    assert view.steered(ObjectiveWeights(carbon=0.1)).carbon == pytest.approx(0.1 * 600 / 312.5)
    off = AppConfig(experts=catalog().experts, carbon={"grid_intensity_file": str(grid), "follow_grid": False})
    assert asyncio.run(BudgetGate(off).view(None)).steered(ObjectiveWeights(carbon=0.1)).carbon == 0.1
