"""Budgets, measured energy and the carbon report through the real graph: a draining budget moves routing to the
greener expert, a spent one answers 429 budget_exceeded with Retry-After, 20 racing requests overspend a nearly
spent budget by at most one request's worth, a replica's measured energy grows with its work, and the report's
totals are the outcome store's sums (and `routerllm report` writes them with its charts)."""

import copy
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import TEST_GRAPH, stop_actors
from training.report import write_report

pytestmark = pytest.mark.serve

NAMESPACE = "routerllm-test-budgets"
LEDGER = "routerllm-budgets-test"
ASK = [{"role": "user", "content": "Write a haiku about routers."}]
LIMIT_G = 0.1


@pytest.fixture(scope="module")
def budget_graph(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("budgets")
    graph = copy.deepcopy(TEST_GRAPH)
    big, small = graph["experts"][0], graph["experts"][1]  # SmolLM2 on CPU; the fake-engine vLLM expert
    big.update(name="big", params_b=70, energy_per_token_j=4.0, quality_prior=0.9, max_new_tokens=2)
    small.update(name="small", params_b=7, energy_per_token_j=0.4, quality_prior=0.5, max_new_tokens=2)
    small.update(price_in_per_1k=0.0001, price_out_per_1k=0.0001)
    dead = graph["experts"][2]  # nothing listens: its calls fail
    # As big's carbon, so that big is the carbon scale's top (normalised 1.0 against small's 0.1) and the switch
    # point below holds; a greater figure here would shrink big's normalised carbon and move the switch.
    dead.update(quality_prior=0.1, energy_per_token_j=4.0)
    graph["experts"] = [big, small, dead]
    moe = {"hidden": [16], "seed": 0, "quality_prior_weight": 1.0}
    graph["router"] = {
        "strategies": {"moe": moe},
        "default_strategy": "moe",
        "default_weights": {"quality": 1.0, "cost": 0.0, "carbon": 0.1, "latency": 0.0},
        "num_cpus": 0.1,
    }
    graph["carbon"] = {"country_iso_code": "USA", "measure_with_codecarbon": True, "measure_interval_s": 1}
    graph["budgets"] = {
        "window_s": 3600,
        "per_caller": {"carbon_g": LIMIT_G},
        "on_exhausted": "refuse",
        "state_ttl_s": 0,
        "actor_name": LEDGER,
        "namespace": NAMESPACE,
    }
    store = tmp / "outcomes.db"
    graph["learner"] = {
        "namespace": NAMESPACE,
        "num_cpus": 0.1,
        "training": {
            "store_path": str(store),
            "checkpoint_dir": str(tmp / "policies"),
            # No exploration: the test reads which expert moe's scores prefer as the budget drains.
            "strategies": {"moe": {"config": moe, "epsilon_start": 0.0, "epsilon_end": 0.0}},
            "publish_every_s": None,
        },
    }
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    serve.run(build_app(config), name="routerllm-budgets", route_prefix="/budgets")
    yield ray_session + "/budgets", store, tmp
    serve.delete("routerllm-budgets")
    stop_actors(NAMESPACE, LEDGER, "routerllm-learner")


def chat(url: str, user: str | None = None, **extra) -> httpx.Response:
    body = {"messages": ASK, "max_tokens": 2, **extra}
    if user is not None:
        body["user"] = user
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=120)


def caller_line(routing: dict) -> dict:
    return next(x for x in routing["budget"]["lines"] if x["scope"] == "caller")


def expert_stats(url: str, name: str) -> dict:
    experts = httpx.get(url + "/v1/experts", timeout=60).json()["experts"]
    return next(e["stats"] for e in experts if e["name"] == name)


def test_a_replica_that_generates_reports_positive_growing_energy(budget_graph):
    url, _, _ = budget_graph
    before = expert_stats(url, "big")
    for _ in range(3):
        assert chat(url, model="big").status_code == 200
    after = expert_stats(url, "big")
    assert before["tracking_mode"] == "process" and after["replica"] == before["replica"]
    assert after["tokens_out"] > before["tokens_out"] and after["energy_kwh"] > before["energy_kwh"] > 0
    assert after["measured_j_per_token"] > 0 and after["modelled"]["j_per_token"] == 4.0


def test_every_response_carries_the_budget_state(budget_graph):
    url, _, _ = budget_graph
    r = httpx.post(url + "/v1/route", json={"prompt": "hello", "user": "reader"}, timeout=60)
    budget = r.json()["routing"]["budget"]
    assert budget["status"] == "ok" and budget["caller"] == "reader" and budget["carbon_left_fraction"] == 1.0
    assert caller_line(r.json()["routing"])["limit"] == LIMIT_G and r.headers["x-router-budget-status"] == "ok"
    unnamed = chat(url).json()["routing"]["budget"]
    assert unnamed["status"] == "reserved" and unnamed["caller"] is None and unnamed["lines"] == []


def test_a_draining_budget_moves_routing_to_the_greener_expert_then_refuses(budget_graph):
    url, _, _ = budget_graph
    seen, left = [], 1.0  # (expert that answered, fraction left when it was routed, how)
    for _ in range(200):
        r = chat(url, "drainer")
        if r.status_code == 429:
            break
        assert r.status_code == 200, r.text
        routing = r.json()["routing"]
        how = "failover" if routing.get("failover_from") else routing["budget"]["status"]
        seen.append((routing["expert"], round(left, 3), how))
        left = routing["budget"]["carbon_left_fraction"]
    assert r.status_code == 429, "the budget never ran out"
    error = r.json()["error"]
    assert error["code"] == "budget_exceeded" and int(r.headers["retry-after"]) >= 1
    routed = [(e, f) for e, f, how in seen if how == "reserved"]  # moe's own choices, not failovers or downgrades
    # Full budget: moe takes the big expert (higher quality prior); below 0.25 left the carbon weight has risen by
    # at least 0.5 and the green expert wins (the switch point at these figures is ~0.33 left).
    assert all(e == "big" for e, f in routed if f > 0.5), seen
    assert [e for e, f in routed if f < 0.25] and all(e == "small" for e, f in routed if f < 0.25), seen


def test_twenty_racing_requests_overspend_by_at_most_one_request(budget_graph):
    url, _, _ = budget_graph
    first = chat(url, "racer", model="small").json()["routing"]
    per_call = first["carbon_g"]
    while caller_line(first)["left"] > 3 * per_call:  # nearly spend it, one request at a time
        first = chat(url, "racer", model="small").json()["routing"]
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: chat(url, "racer", model="small"), range(20)))
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 429} and codes.count(200) <= 5
    charges = [r.json()["routing"]["carbon_g"] for r in responses if r.status_code == 200]
    final = caller_line(
        httpx.post(url + "/v1/route", json={"prompt": "x", "user": "racer"}, timeout=60).json()["routing"]
    )
    assert final["reserved"] == 0
    assert final["spent"] <= LIMIT_G + max(charges + [per_call]) + 1e-12


def test_the_report_totals_are_the_store_sums(budget_graph):
    url, store, tmp = budget_graph
    report = httpx.get(url + "/v1/carbon/report", params={"window_s": 3600}, timeout=60).json()
    since, until = report["window"]["since"], report["window"]["until"]
    with sqlite3.connect(store) as db:
        window = db.execute(
            "SELECT SUM(carbon_g), SUM(fanout_rank = 0), SUM(cost_usd) FROM outcomes WHERE time >= ? AND time < ?",
            (since, until),
        ).fetchone()
        total = db.execute("SELECT SUM(carbon_g), COUNT(*) FROM outcomes").fetchone()
        by_expert = dict(db.execute("SELECT expert, SUM(carbon_g) FROM outcomes GROUP BY expert").fetchall())
    assert report["total_emissions_kg"] == pytest.approx(window[0] / 1000)
    assert report["total_requests"] == window[1] and report["total_cost_usd"] == pytest.approx(window[2])
    assert report["total"]["total_emissions_kg"] == pytest.approx(total[0] / 1000)
    assert report["total"]["total_calls"] == total[1]
    assert report["emissions_by_expert"] == pytest.approx({k: v / 1000 for k, v in by_expert.items()})
    assert report["carbon_saved_kg"] > 0 and report["largest_expert"] == "big"
    assert report["measured_vs_modelled"]["big"]["measured_energy_kwh"] > 0
    written = write_report(url, tmp / "report", page_size=7)
    assert [p.name for p in written] == ["report.json", "emissions.png", "savings.png", "budget.png"]
    assert json.loads(written[0].read_text())["total"]["total_calls"] == total[1]
    assert all(p.stat().st_size > 1000 for p in written[1:])


def test_a_streamed_answer_is_settled_and_a_failed_call_releases_its_reservation(budget_graph):
    url, _, _ = budget_graph
    body = {"messages": ASK, "max_tokens": 2, "user": "streamer", "stream": True, "model": "small"}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    routing = events[-1]["routing"]
    assert routing["budget"]["status"] == "reserved" and caller_line(routing)["spent"] == routing["carbon_g"] > 0
    failed = chat(url, "failer", model="dead_api")
    assert failed.status_code == 503
    after = httpx.post(url + "/v1/route", json={"prompt": "x", "user": "failer"}, timeout=60).json()["routing"]
    assert caller_line(after)["reserved"] == 0 and caller_line(after)["spent"] == 0
