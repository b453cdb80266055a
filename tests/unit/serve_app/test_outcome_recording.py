"""Outcome recording: the ingress builds the store's own OutcomeRecord for every answered call, and the
`feedback` status says whether it reached the learner; a slow or missing learner never fails the answer."""

import asyncio

import numpy as np
import pytest

from router_deployments.strategies import RoutingDecision
from serve_app.config import REPO_ROOT, LearnerSettings, load_config
from serve_app.errors import APIError
from serve_app.outcome_recording import (
    ACCEPTED,
    FEEDBACK_UNSURE,
    LearnerNotReadyError,
    OutcomeRecorder,
    outcome_records,
    placement_report,
)
from serve_app.routed_request import ExpertAnswer
from training.online.learner_actor import LearnerConfigChangedError, config_changes
from training.online.outcome_store import OutcomeRecord

from .fakes import Method, catalog, decision, result, routed

CATALOG = catalog()


def answers(*experts: str) -> list[ExpertAnswer]:
    return [ExpertAnswer.of(e, result(latency_s=0.1 * (i + 1)), CATALOG) for i, e in enumerate(experts)]


class FakeLearner:
    """The learner actor's calls; `record_outcomes` keeps what it was sent, or fails as told."""

    def __init__(self, error: Exception | None = None, delay_s: float = 0.0):
        self.error, self.delay_s, self.sent = error, delay_s, []
        self.record_outcomes = Method(self._record)

    async def _record(self, records):
        await asyncio.sleep(self.delay_s)
        if self.error:
            raise self.error
        self.sent.extend(records)
        return len(records)


def recorder(learner: FakeLearner | None) -> OutcomeRecorder:
    """A recorder without an actor, given a stand-in learner (settings as a `learner` section would give)."""
    r = OutcomeRecorder(None, CATALOG)
    if learner is not None:
        r.learner = learner
        r.settings = LearnerSettings.model_validate(
            {"record_timeout_s": 0.2, "training": {"store_path": "unused.db", "checkpoint_dir": "unused"}}
        )
    return r


def test_records_are_outcome_records_one_per_answered_expert():
    r = routed(decision(fanout=["b", "a"]))
    records = outcome_records(r, answers("b", "a"))
    assert all(isinstance(o, OutcomeRecord) for o in records)
    first, other = records
    assert (first.request_id, first.group_id, first.fanout_rank) == ("chatcmpl-1", "chatcmpl-1", 0)
    assert (other.request_id, other.group_id, other.fanout_rank) == ("chatcmpl-1:a", "chatcmpl-1", 1)
    assert other.request_id == "chatcmpl-1:a"  # outcome_store.outcome_id, the key the online bench uses too
    assert (first.strategy, first.expert, first.policy_version, first.probs) == ("moe", "b", 3, [0.6, 0.1, 0.3])
    assert first.weights == r.weights and first.carbon_budget_left == 0.5
    assert first.embedding.dtype == np.float32 and first.embedding.tolist() == [1.0] * 4
    assert (other.latency_s, other.tokens_in, other.tokens_out) == (0.2, 10, 20)
    assert other.cost_usd == pytest.approx(CATALOG.cost_usd("a", 10, 20))
    assert other.carbon_g == pytest.approx(CATALOG.carbon_g("a", 10, 20))


def test_accepted_once_the_learner_has_them():
    learner = FakeLearner()
    status = asyncio.run(recorder(learner).record(routed(), answers("a", "b")))
    assert status == ACCEPTED == "accepted"
    assert [o.request_id for o in learner.sent] == ["chatcmpl-1", "chatcmpl-1:b"]


@pytest.mark.parametrize(
    "learner, request_, status",
    [
        (None, routed(), "online learning is not enabled"),
        (FakeLearner(), routed(RoutingDecision.direct("a"), embedding=None), "direct requests are not learned"),
        (FakeLearner(RuntimeError("actor died")), routed(), "learner unavailable: RuntimeError: actor died"),
        (FakeLearner(delay_s=5), routed(), "learner unavailable: TimeoutError: "),
    ],
    ids=["no learner", "direct", "learner error", "learner timeout"],
)
def test_unrecorded_outcomes_say_why(learner, request_, status):
    assert asyncio.run(recorder(learner).record(request_, answers("a"))) == f"unavailable: {status}"
    if learner is not None:
        assert learner.sent == []


def test_learner_calls_without_a_learner_are_501_and_a_dead_learner_503():
    with pytest.raises(APIError) as err:
        recorder(None).require_learner()
    assert err.value.status == 501 and err.value.code == "learner_disabled"

    async def slow():
        await asyncio.sleep(5)

    with pytest.raises(APIError) as err:
        asyncio.run(recorder(FakeLearner()).ask(slow()))
    assert err.value.status == 503 and err.value.code == "learner_unavailable"
    assert "nothing was recorded" not in err.value.message and err.value.message.endswith("retry")
    with pytest.raises(APIError) as err:
        asyncio.run(recorder(FakeLearner()).ask(slow(), FEEDBACK_UNSURE))
    assert "may or may not be recorded" in err.value.message and "409 duplicate_feedback" in err.value.message


def test_a_learner_that_cannot_be_placed_names_what_it_asked_for_and_what_the_cluster_has():
    config = load_config(REPO_ROOT / "configs" / "cpu.yaml")
    config.learner.num_cpus = 0.5
    report = placement_report(config.learner, config.cpu_reservations(), {"CPU": 2.0}, {"CPU": 0.05})
    assert "asked for num_cpus=0.5" in report and "within 60 s" in report
    assert "the cluster has 2 CPUs, 0.05 free now" in report
    assert "reserves 2.35 CPUs (ingress 0.1, embedding 0.5, router 0.25, expert_slot_70b 0.25" in report
    assert "learner 0.5)" in report and "lower learner.num_cpus" in report


def test_waiting_for_the_learner_is_bounded_and_says_why(monkeypatch):
    import ray

    config = load_config(REPO_ROOT / "configs" / "cpu.yaml")
    r = recorder(FakeLearner())
    r.settings = r.settings.model_copy(update={"ready_timeout_s": 0.05})

    async def never():
        await asyncio.sleep(10)

    r.learner.live_versions = Method(never)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 0.0})
    with pytest.raises(LearnerNotReadyError, match=r"did not answer within 0.05 s; the cluster has 2 CPUs, 0 free"):
        asyncio.run(r.wait_until_ready(config))

    async def answers_now():
        return {}

    r.learner.live_versions = Method(answers_now)
    r.learner.started_with = Method(started_with(r))
    asyncio.run(r.wait_until_ready(config))  # returns
    asyncio.run(recorder(None).wait_until_ready(config))  # no learner: nothing to wait for


def started_with(r: OutcomeRecorder, **changed):
    """What the learner actor answers to started_with(): the recorder's own config, with `changed` fields."""
    training = {**r.settings.training.model_dump(mode="json"), **changed}

    async def answer():
        return {"training": training, "catalog": r.catalog.model_dump(mode="json")}

    return answer


def test_a_learner_running_another_config_is_refused_naming_the_fields():
    config = load_config(REPO_ROOT / "configs" / "cpu.yaml")
    r = recorder(FakeLearner())

    async def answers_now():
        return {}

    r.learner.live_versions = Method(answers_now)
    r.learner.started_with = Method(started_with(r, batch_size=7, seed=3))
    with pytest.raises(LearnerConfigChangedError) as e:
        asyncio.run(r.wait_until_ready(config))
    message = str(e.value)
    assert "training.batch_size: running 7, wanted 64" in message and "training.seed: running 3, wanted 0" in message
    assert "ray.kill(ray.get_actor('routerllm-learner'))" in message and "learner.actor_name" in message


def test_config_changes_name_every_changed_leaf():
    running = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": True}
    wanted = {"a": 1, "b": {"c": [1, 3], "d": "x"}, "new": 0.5}
    assert config_changes(running, wanted) == [
        "b.c: running [1, 2], wanted [1, 3]",
        "gone: running True, wanted '<unset>'",
        "new: running '<unset>', wanted 0.5",
    ]
    assert config_changes(running, running) == []
