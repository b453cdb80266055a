"""The carbon report: totals are the store's sums, savings are the counterfactuals of the module docstring, and
recommendations come from the figures (none without them)."""

import numpy as np
import pytest

from experts.catalog import ExpertCatalog
from serve_app.budget_ledger import BudgetLine, BudgetState
from serve_app.carbon_report import build_report
from training.online.outcome_store import OutcomeRecord, OutcomeStore


def catalog() -> ExpertCatalog:
    def expert(name, params, joules, prior):
        return dict(
            name=name,
            backend={"kind": "replay", "data": "x.csv", "model": name},
            params_b=params,
            price_in_per_1k=0.001,
            price_out_per_1k=0.001,
            energy_per_token_j=joules,
            expected_latency_s=1,
            quality_prior=prior,
        )

    return ExpertCatalog(experts=[expert("big", 70, 4.0, 0.8), expert("small", 7, 0.4, 0.5)])


def summary(store, since=None):
    return {"experts": store.carbon_by("expert", since), "strategies": store.carbon_by("strategy", since)}


def fill(store, n_big, n_small, score_big=0.7, score_small=0.7, at=100.0):
    records = []
    records += [("big", 10.0, score_big)] * n_big
    records += [("small", 1.0, score_small)] * n_small
    for i, (expert, carbon, score) in enumerate(records):
        rid = f"{expert}-{at}-{i}"
        store.add_outcome(
            OutcomeRecord(request_id=rid, strategy="moe", expert=expert, embedding=np.ones(2), time=at, carbon_g=carbon)
        )
        store.add_feedback(rid, score)


def stats(name, modelled, measured, tokens):
    return {
        "name": name,
        "stats": {
            "replica": "h:1",
            "tokens_in": tokens,
            "tokens_out": 0,
            "modelled": {"j_per_token": modelled, "source": "set by hand", "energy_kwh": 0.0},
            "measured_j_per_token": measured,
            "energy_kwh": 1.0,
            "calibrated_j_per_token": measured,
            "tracking_mode": "process",
        },
    }


def test_totals_savings_and_recommendations():
    store = OutcomeStore(":memory:")
    fill(store, 6, 5, at=100.0)
    fill(store, 1, 0, at=10.0)  # outside the window
    line = BudgetLine(scope="total", dimension="carbon_g", limit=100, spent=90, reserved=0, left=10, left_fraction=0.1)
    budget = BudgetState(window_s=50, caller=None, lines=[line])
    measured = [stats("big", 4.0, 4.1, 5000), stats("small", 0.4, 2.0, 5000)]
    report = build_report(catalog(), 50, summary(store, 50.0), summary(store), budget, measured, now=100.0)
    assert report["total_requests"] == 11 and report["total_emissions_kg"] == pytest.approx(0.065)
    assert report["total"]["total_requests"] == 12 and report["total"]["total_emissions_kg"] == pytest.approx(0.075)
    assert report["average_emissions_per_request"] == pytest.approx(0.065 / 11)
    # Always big: the 5 small answers would have cost 10x (50 g instead of 5 g): 45 g saved of 110 g.
    assert report["carbon_saved_kg"] == pytest.approx(0.045)
    assert report["carbon_efficiency_score"] == pytest.approx(45 / 110)
    # Same mean feedback: the tie goes to the higher quality prior (big), so the same counterfactual.
    assert report["best_quality_expert"] == "big" and report["carbon_saved_vs_best_kg"] == pytest.approx(0.045)
    assert report["emissions_by_expert"] == pytest.approx({"big": 0.06, "small": 0.005})
    assert report["per_strategy"]["moe"]["calls"] == 11
    advice = report["recommendations"]
    assert any(a.startswith("big answers 55% of requests at 10.0x the carbon per call of small") for a in advice)
    assert any("total carbon_g budget is 90% spent" in a for a in advice)
    assert any(a.startswith("small: codecarbon measured 2 J/token") for a in advice)
    assert report["measured_vs_modelled"]["big"]["modelled_j_per_token"] == 4.0


def test_no_figures_no_recommendations():
    store = OutcomeStore(":memory:")
    fill(store, 6, 4, score_big=0.9, score_small=0.3)  # the big expert is better: nothing to advise
    report = build_report(catalog(), 3600, summary(store), summary(store), None, [], now=200.0)
    assert report["recommendations"] == [] and report["best_quality_expert"] == "big"
    empty = build_report(
        catalog(), 3600, {"experts": [], "strategies": []}, {"experts": [], "strategies": []}, None, []
    )
    assert empty["total_requests"] == 0 and empty["carbon_efficiency_score"] == 0.0 and empty["recommendations"] == []
