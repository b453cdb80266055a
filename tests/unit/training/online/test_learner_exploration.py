"""The learner's side of issue 13: heads see each experience once, exploration is counted and shown in status."""

from __future__ import annotations

import numpy as np
import pytest

from training.online.experiences import ExplorationTally
from training.online.learner import OnlineLearner, StrategyTraining
from training.online.outcome_store import LoggedExperience, OutcomeRecord

from .test_learner import DIM, SMALL_NETS, catalog, feed, learner_config


def test_a_head_observes_each_experience_once_though_batches_repeat_replay(tmp_path):
    strategies = {
        name: StrategyTraining(config={**SMALL_NETS[name], "head": {}, "network_weight": 0.0}) for name in ("rl", "moe")
    }
    config = learner_config(tmp_path, batch_size=16, min_experiences=4)
    learner = OnlineLearner(config.model_copy(update={"strategies": strategies}), catalog())
    feed(learner, 30)
    for name in ("rl", "moe"):
        t = learner.trainees[name]
        assert t.updates >= 27  # one learn() of 16 (new + replay) per step once 4 are in replay
        assert t.strategy.head.count.sum() == len(t.replay) == 30
        assert t.last_metrics["head_observed"] == 30.0
    # A restarted learner resumes the head's statistics from the live checkpoint and does not count them again.
    again = OnlineLearner(config.model_copy(update={"strategies": strategies}), catalog())
    live = learner.trainees["moe"].live.head.count.sum()
    assert again.trainees["moe"].strategy.head.count.sum() == live


def test_status_shows_the_share_of_explored_requests(tmp_path):
    learner = OnlineLearner(learner_config(tmp_path, strategies=("rl",)), catalog())
    feed(learner, 60)  # uniform logged probs: the most probable expert is index 0, so experts 1 and 2 explored
    figures = learner.status()["strategies"]["rl"]["exploration"]
    logged = [e.outcome.expert for e in learner.store.experiences_after(0)]
    assert figures["logged_answers"] == 60
    assert figures["explored_share"] == np.mean([x != "left" for x in logged])
    assert figures["mean_logged_propensity"] == pytest.approx(1 / 3)
    assert learner.status()["strategies"]["rl"]["epsilon"] is not None


def test_the_tally_ignores_fanout_extras_and_decisions_without_probabilities():
    tally = ExplorationTally()

    def item(rank: int, probs):
        record = OutcomeRecord(
            request_id=f"r{rank}{probs}",
            strategy="moe",
            expert="x",
            embedding=np.ones(DIM),
            probs=probs,
            fanout_rank=rank,
        )
        return LoggedExperience(cursor=1, outcome=record, score=1.0, feedback_time=0.0)

    tally.add(item(0, [0.9, 0.1]), expert=1)
    tally.add(item(1, [0.9, 0.1]), expert=1)
    tally.add(item(0, None), expert=0)
    assert tally.figures("moe") == {"logged_answers": 1, "explored_share": 1.0, "mean_logged_propensity": 0.1}
    assert tally.figures("rl") == {"logged_answers": 0, "explored_share": None, "mean_logged_propensity": None}
