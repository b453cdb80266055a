"""The outcome store's read-only carbon queries: sums per expert and strategy over a time span, and pages."""

import numpy as np
import pytest

from training.online.outcome_store import OutcomeRecord, OutcomeStore


def record(rid, expert, at, carbon, rank=0, strategy="moe"):
    return OutcomeRecord(
        request_id=rid,
        group_id=rid.split(":")[0],
        fanout_rank=rank,
        strategy=strategy,
        expert=expert,
        embedding=np.ones(3),
        time=at,
        tokens_in=10,
        tokens_out=5,
        cost_usd=carbon / 100,
        carbon_g=carbon,
    )


@pytest.fixture
def store():
    s = OutcomeStore(":memory:")
    s.add_outcomes([record("r1", "a", 10.0, 1.0), record("r1:b", "b", 10.0, 2.0, rank=1)])
    s.add_outcomes([record("r2", "a", 20.0, 4.0, strategy="rl"), record("r3", "b", 30.0, 8.0)])
    s.add_feedback("r1", 0.5)
    s.add_feedback("r3", 1.0)
    return s


def test_sums_per_expert_and_strategy_over_a_span(store):
    rows = {r["expert"]: r for r in store.carbon_by("expert")}
    assert rows["a"]["calls"] == 2 and rows["a"]["requests"] == 2 and rows["a"]["carbon_g"] == 5.0
    assert rows["b"]["calls"] == 2 and rows["b"]["requests"] == 1 and rows["b"]["carbon_g_rank0"] == 8.0
    assert (rows["a"]["feedback"], rows["a"]["score_sum"]) == (1, 0.5)
    assert rows["a"]["tokens_in"] == 20 and rows["b"]["cost_usd"] == pytest.approx(0.1)
    late = {r["expert"]: r for r in store.carbon_by("expert", since=15.0, until=30.0)}
    assert set(late) == {"a"} and late["a"]["carbon_g"] == 4.0
    strategies = {r["strategy"]: r["carbon_g"] for r in store.carbon_by("strategy")}
    assert strategies == {"moe": 11.0, "rl": 4.0}
    with pytest.raises(ValueError, match="groups by"):
        store.carbon_by("time")


def test_pages_through_the_log_in_order(store):
    first = store.outcome_page(after=0, limit=3)
    assert [o["id"] for o in first] == [1, 2, 3] and "embedding" not in first[0]
    rest = store.outcome_page(after=first[-1]["id"], limit=3)
    assert [(o["expert"], o["carbon_g"]) for o in rest] == [("b", 8.0)]
    assert [o["time"] for o in store.outcome_page(since=20.0)] == [20.0, 30.0]
