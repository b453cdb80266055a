"""The learner actor: replicas pull versions, errors keep their names, and a kill mid-stream loses nothing."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import ray

from training.online.learner_actor import LEARNER_NAME, get_or_create_learner
from training.online.outcome_store import (
    DuplicateFeedbackError,
    InvalidScoreError,
    OutcomeRecord,
    UnknownRequestError,
)

from .test_learner import catalog, learner_config, score_of

N_EVENTS = 30
KILL_AT = 12


@pytest.fixture(scope="module")
def ray_session():
    """One small Ray session for this module (or the one a Serve test module already started)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def learner(ray_session, tmp_path_factory):
    """One actor for the module (starting a worker with torch is the slow part)."""
    namespace = f"routerllm-test-{uuid.uuid4().hex[:8]}"
    config = learner_config(tmp_path_factory.mktemp("learner"), publish_every_updates=1)
    actor = get_or_create_learner(config, catalog(), namespace=namespace, num_cpus=0, poll_interval_s=0.02)
    yield actor, config, namespace
    ray.kill(actor, no_restart=True)


def outcome(i: int) -> tuple[OutcomeRecord, float]:
    emb = np.random.default_rng(i).normal(size=8).astype(np.float32)
    expert = i % 3
    record = OutcomeRecord(
        request_id=f"req-{i}", strategy="rl", expert=catalog().names[expert], embedding=emb, probs=[1 / 3] * 3
    )
    return record, score_of(emb, expert)


def test_replicas_pull_only_new_versions_and_errors_keep_their_names(learner):
    actor, _, _ = learner
    assert ray.get(actor.live_versions.remote()) == {"rl": 1, "moe": 1}
    assert ray.get(actor.get_policy.remote("rl", 1)) is None
    version, arrays = ray.get(actor.get_policy.remote("rl", None))
    assert version == 1 and all(isinstance(a, np.ndarray) for a in arrays.values())
    assert "epsilon" in ray.get(actor.routing_settings.remote("rl"))
    ray.get(actor.ack.remote("replica-1", "rl", 1, time.time()))
    propagation = ray.get(actor.status.remote())["strategies"]["rl"]["propagation"]
    assert propagation["replicas"] == 1 and propagation["seconds_to_all"] is not None
    with pytest.raises(ValueError, match="no earlier published version"):
        ray.get(actor.rollback.remote("rl"))

    record, _ = outcome(1000)
    assert ray.get(actor.record_outcome.remote(record)) is True
    assert ray.get(actor.record_outcome.remote(record)) is False  # a retry records nothing twice
    with pytest.raises(TypeError, match="OutcomeRecord"):  # a dict is refused, not coerced
        ray.get(actor.record_outcomes.remote([record.model_dump()]))
    with pytest.raises(UnknownRequestError):
        ray.get(actor.record_feedback.remote("nope", 1.0))
    with pytest.raises(InvalidScoreError):
        ray.get(actor.record_feedback.remote(record.request_id, 2.0))
    ray.get(actor.record_feedback.remote(record.request_id, 1.0))
    with pytest.raises(DuplicateFeedbackError):
        ray.get(actor.record_feedback.remote(record.request_id, 0.0))


def test_killed_mid_stream_loses_nothing_acknowledged_and_resumes(learner):
    actor, config, namespace = learner
    before = ray.get(actor.status.remote())
    acknowledged = before["store"]["feedback"]
    for i in range(N_EVENTS):
        if i == KILL_AT:
            ray.kill(actor, no_restart=False)  # Ray restarts it; queued calls are retried on the new one
        record, score = outcome(i)
        ray.get(actor.record_outcomes.remote([record]))
        ray.get(actor.record_feedback.remote(record.request_id, score))
        acknowledged += 1

    assert ray.get(actor.wait_until_trained.remote(120))
    status = ray.get(actor.status.remote())
    assert status["actor"]["pid"] != before["actor"]["pid"]  # it really was restarted
    assert status["store"]["feedback"] == acknowledged and status["actor"]["pending_feedback"] == 0
    for name in ("rl", "moe"):
        s = status["strategies"][name]
        assert s["replay_size"] == acknowledged and s["experiences_seen"] == acknowledged
        assert s["live_version"] > 1
    assert status["actor"]["training_errors"] == 0
    live = status["strategies"]["moe"]["live_version"]
    assert ray.get(actor.rollback.remote("moe")) < live
    # The same named actor is found again, not created twice.
    again = get_or_create_learner(config, catalog(), namespace=namespace, num_cpus=0)
    assert ray.get(again.live_versions.remote()) == ray.get(actor.live_versions.remote())
    assert ray.get_actor(LEARNER_NAME, namespace=namespace) is not None


def test_an_actor_whose_warm_start_changed_fails_to_start_naming_the_field(ray_session, tmp_path):
    """The refusal reaches whoever deploys: the actor's creation fails with the field's name, which the graph's
    wait_until_ready turns into LearnerNotReadyError ("failed to start: ...")."""
    from router_deployments.strategies import build_strategy
    from training.online.learner import OnlineLearner

    from .test_learner import SMALL_NETS, warm_config

    for seed, where in ((5, "offline"), (6, "rerated")):
        build_strategy("moe", catalog(), {**SMALL_NETS["moe"], "seed": seed}).save(tmp_path / where)
    OnlineLearner(warm_config(tmp_path, str(tmp_path / "offline")), catalog())  # the versions a run left behind
    namespace = f"routerllm-test-{uuid.uuid4().hex[:8]}"
    config = warm_config(tmp_path, str(tmp_path / "rerated"))
    actor = get_or_create_learner(config, catalog(), namespace=namespace, num_cpus=0)
    try:
        with pytest.raises(ray.exceptions.RayActorError, match=r"learner\.training\.strategies\.moe\.warm_start"):
            ray.get(actor.live_versions.remote(), timeout=60)
    finally:
        ray.kill(actor, no_restart=True)
