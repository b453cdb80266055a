"""`GET /v1/carbon/report`: emissions, savings and recommendations computed from the outcome store.

Every figure is a sum over the store (OutcomeStore.carbon_by, through the learner actor), for a window and in
total. Savings are counterfactual: the same answers (same tokens, same grid at the time) had every request gone to
one expert X cost, for the rank-0 answer of each request, carbon_g x J/token(X) / J/token(answering expert), with
the catalog's J/token; a fan-out's other calls are carbon the counterfactual would not have spent.

    carbon_saved_kg            vs always the largest expert (most parameters)
    carbon_saved_vs_best_kg    vs always the best-quality expert (highest mean feedback with >= MIN_FEEDBACK
                               scores, else the highest quality prior)
    carbon_efficiency_score    carbon_saved_kg / the always-largest counterfactual (0: no saving, 1: no carbon)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from experts.catalog import ExpertCatalog
from serve_app.budget_ledger import BudgetState
from serve_app.errors import short_error

MIN_FEEDBACK = 5
"""Scores an expert needs before its mean feedback is trusted (best-quality expert, recommendations)."""
SAME_QUALITY = 0.05
"""Mean feedbacks closer than this count as the same quality."""
SEVERAL_TIMES = 2.0
"""Carbon-per-call ratio that makes an expert worth a recommendation."""
LARGE_SHARE = 0.2
"""Share of requests from which an expert's traffic is worth a recommendation."""
MEASURED_OFF_BY = 2.0
"""Measured/modelled J/token ratio (either way) that calls for recalibrating the catalog."""
MIN_MEASURED_TOKENS = 1000


async def gather_expert_stats(catalog: ExpertCatalog, handles: dict[str, Any]) -> list[dict[str, Any]]:
    """Each expert's catalog entry with the stats of the replica that answered (an error instead if it failed)."""
    stats = await asyncio.gather(*(handles[n].stats.remote() for n in catalog.names), return_exceptions=True)
    out = []
    for spec, s in zip(catalog.experts, stats):
        entry = spec.model_dump(mode="json")
        entry["stats"] = {"error": short_error(s)} if isinstance(s, BaseException) else s
        out.append(entry)
    return out


def _mean_score(row: dict[str, Any]) -> float | None:
    return row["score_sum"] / row["feedback"] if row["feedback"] else None


def best_quality_expert(catalog: ExpertCatalog, experts: list[dict[str, Any]]) -> str:
    """Highest mean feedback (to 6 decimals; ties: the higher quality prior) among experts with MIN_FEEDBACK
    scores; else the highest quality prior."""
    prior = {e.name: e.quality_prior for e in catalog.experts}
    scored = [
        (round(r["score_sum"] / r["feedback"], 6), prior.get(r["expert"], 0.0), r["expert"])
        for r in experts
        if r["feedback"] >= MIN_FEEDBACK
    ]
    if scored:
        return max(scored)[2]
    return max(catalog.experts, key=lambda e: e.quality_prior).name


def counterfactual_g(catalog: ExpertCatalog, experts: list[dict[str, Any]], target: str) -> float:
    """gCO2eq had every request's answer come from `target` (see the module docstring)."""
    j_target = catalog.get(target).energy_per_token_j
    total = 0.0
    for row in experts:
        if row["expert"] not in catalog.names:
            continue
        j = catalog.get(row["expert"]).energy_per_token_j
        total += row["carbon_g_rank0"] * (j_target / j) if j > 0 else 0.0
    return total


def section(catalog: ExpertCatalog, summary: dict[str, Any]) -> dict[str, Any]:
    """The seed's report fields and more, for one span of the store."""
    experts, strategies = summary["experts"], summary["strategies"]
    carbon = sum(r["carbon_g"] for r in experts)
    requests = sum(r["requests"] for r in experts)
    largest = max(catalog.experts, key=lambda e: e.params_b).name
    best = best_quality_expert(catalog, experts)
    vs_largest, vs_best = counterfactual_g(catalog, experts, largest), counterfactual_g(catalog, experts, best)
    saved = vs_largest - carbon
    return {
        "total_emissions_kg": carbon / 1000.0,
        "total_requests": requests,
        "total_calls": sum(r["calls"] for r in experts),
        "total_cost_usd": sum(r["cost_usd"] for r in experts),
        "average_emissions_per_request": carbon / 1000.0 / requests if requests else 0.0,
        "carbon_saved_kg": saved / 1000.0,
        "carbon_saved_vs_best_kg": (vs_best - carbon) / 1000.0,
        "carbon_efficiency_score": saved / vs_largest if vs_largest > 0 else 0.0,
        "largest_expert": largest,
        "best_quality_expert": best,
        "emissions_by_expert": {r["expert"]: r["carbon_g"] / 1000.0 for r in experts},
        "per_expert": {r["expert"]: _figures(r, requests) for r in experts},
        "per_strategy": {r["strategy"]: _figures(r, requests) for r in strategies},
    }


def _figures(row: dict[str, Any], requests: int) -> dict[str, Any]:
    return {
        "calls": row["calls"],
        "requests": row["requests"],
        "share": row["requests"] / requests if requests else 0.0,
        "tokens": row["tokens_in"] + row["tokens_out"],
        "emissions_kg": row["carbon_g"] / 1000.0,
        "carbon_g_per_call": row["carbon_g"] / row["calls"],
        "cost_usd": row["cost_usd"],
        "feedback": row["feedback"],
        "mean_feedback": _mean_score(row),
    }


def measured_vs_modelled(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Per expert: modelled and measured J/token and energy of the replica that answered /v1/experts."""
    out = {}
    for entry in stats:
        s = entry["stats"]
        if "error" in s:
            out[entry["name"]] = {"error": s["error"]}
            continue
        out[entry["name"]] = {
            "replica": s.get("replica"),
            "tokens": s["tokens_in"] + s["tokens_out"],
            "modelled_j_per_token": s["modelled"]["j_per_token"],
            "modelled_source": s["modelled"]["source"],
            "modelled_energy_kwh": s["modelled"]["energy_kwh"],
            "measured_j_per_token": s.get("measured_j_per_token"),
            "measured_energy_kwh": s.get("energy_kwh"),
            "calibrated_j_per_token": s.get("calibrated_j_per_token"),
            "tracking_mode": s.get("tracking_mode"),
        }
    return out


def recommendations(window: dict[str, Any], budget: BudgetState | None, measured: dict[str, Any]) -> list[str]:
    """Advice computed from the figures; an empty list when none of the rules fires."""
    advice = _carbon_heavy_experts(window["per_expert"])
    for line in budget.lines if budget else []:
        if line.left_fraction < 0.2:
            advice.append(
                f"the {line.scope} {line.dimension} budget is {1 - line.left_fraction:.0%} spent over the last "
                f"{budget.window_s:g} s ({line.spent:.4g} of {line.limit:.4g}): routing is steered to greener, cheaper "
                "experts; raise the limit or expect refusals"
            )
    for name, m in measured.items():
        modelled, got = m.get("modelled_j_per_token"), m.get("measured_j_per_token")
        if not modelled or not got or m["tokens"] < MIN_MEASURED_TOKENS:
            continue
        ratio = got / modelled
        if ratio > MEASURED_OFF_BY or ratio < 1 / MEASURED_OFF_BY:
            advice.append(
                f"{name}: codecarbon measured {got:.3g} J/token on its replica against {modelled:.3g} modelled "
                f"({ratio:.2g}x over {m['tokens']} tokens); set its energy_per_token_j or energy.hardware"
            )
    return advice


def _carbon_heavy_experts(per_expert: dict[str, dict[str, Any]]) -> list[str]:
    advice = []
    trusted = {n: f for n, f in per_expert.items() if f["feedback"] >= MIN_FEEDBACK}
    for a, fa in trusted.items():
        if fa["share"] < LARGE_SHARE:
            continue
        for b, fb in trusted.items():
            if b == a or fb["carbon_g_per_call"] <= 0:
                continue
            ratio = fa["carbon_g_per_call"] / fb["carbon_g_per_call"]
            if ratio >= SEVERAL_TIMES and abs(fa["mean_feedback"] - fb["mean_feedback"]) <= SAME_QUALITY:
                advice.append(
                    f"{a} answers {fa['share']:.0%} of requests at {ratio:.1f}x the carbon per call of {b} with the "
                    f"same mean feedback ({fa['mean_feedback']:.2f} vs {fb['mean_feedback']:.2f} over "
                    f"{fa['feedback']} and {fb['feedback']} scores): raise the carbon weight or lower {a}'s "
                    "quality_prior"
                )
    return advice


def build_report(
    catalog: ExpertCatalog,
    window_s: float,
    in_window: dict[str, Any],
    in_total: dict[str, Any],
    budget: BudgetState | None,
    stats: list[dict[str, Any]],
    now: float | None = None,
) -> dict[str, Any]:
    """The whole report (the endpoint gathers the summaries, budget state and stats, then calls this)."""
    now = time.time() if now is None else now
    window = section(catalog, in_window)
    measured = measured_vs_modelled(stats)
    return {
        **window,
        "window": {"since": now - window_s, "until": now, "seconds": window_s},
        "total": section(catalog, in_total),
        "budget": budget.model_dump() if budget else None,
        "measured_vs_modelled": measured,
        "recommendations": recommendations(window, budget, measured),
    }
