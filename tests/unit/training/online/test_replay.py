"""The learner's replay pool (training/online/replay.py): uniform and TD-prioritised draws, carbon efficiency,
importance weights, capacity; and the strategies' errors() and weighted learn() it relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experts.catalog import ExpertCatalog, ExpertSpec, ReplayBackendConfig
from router_deployments.objectives import ExpertProfile
from router_deployments.strategies import Experience, build_strategy
from training.online.learner_config import ReplayConfig
from training.online.replay import ReplayPool

DIM = 4


def catalog() -> ExpertCatalog:
    def spec(name: str, energy: float) -> ExpertSpec:
        return ExpertSpec(
            name=name,
            backend=ReplayBackendConfig(data="", model=name),
            params_b=1.0,
            price_in_per_1k=0.001,
            price_out_per_1k=0.001,
            energy_per_token_j=energy,
            expected_latency_s=1.0,
            quality_prior=0.5,
        )

    return ExpertCatalog(experts=[spec("dirty", 1.0), spec("clean", 0.01)])


def experience(i: int, quality: float = 0.5, carbon_g: float = 0.0, expert: int = 0) -> Experience:
    embedding = np.zeros(DIM, dtype=np.float32)
    embedding[i % DIM] = 1.0
    return Experience(embedding=embedding, expert=expert, reward=quality, quality=quality, carbon_g=carbon_g)


def pool(capacity: int = 100, **config) -> ReplayPool:
    return ReplayPool(capacity, ReplayConfig(**config), ExpertProfile(catalog()))


def draw_counts(p: ReplayPool, draws: int = 20_000, seed: int = 0) -> np.ndarray:
    index, _, _ = p.sample(draws, np.random.default_rng(seed))
    return np.bincount(index, minlength=len(p)) / draws


def test_uniform_draws_every_experience_alike_with_unit_weights():
    p = pool(priority="uniform")
    for i in range(4):
        p.append(experience(i))
    p.update(np.array([0]), np.array([50.0]))  # errors do not matter when uniform
    _, _, weights = p.sample(10, np.random.default_rng(0))
    np.testing.assert_allclose(weights, 1.0)
    np.testing.assert_allclose(draw_counts(p), 0.25, atol=0.02)


def test_td_priorities_draw_large_errors_more_and_correct_with_importance_weights():
    p = pool(priority="td", alpha=1.0, green_weight=0.0)
    for i in range(3):
        p.append(experience(i))
    np.testing.assert_allclose(p.probabilities(), 1 / 3)  # new experiences all enter at the largest error
    p.update(np.array([0, 1, 2]), np.array([0.9, 0.09, 0.009]))
    expected = (np.array([0.9, 0.09, 0.009]) + 1e-3) / (0.999 + 3e-3)
    np.testing.assert_allclose(p.probabilities(), expected)
    np.testing.assert_allclose(draw_counts(p), expected, atol=0.01)
    index, _, weights = p.sample(200, np.random.default_rng(1))
    assert weights.max() <= 1.0 + 1e-12  # scaled by the largest possible weight
    assert weights[index == 0].max() < weights[index == 1].min()  # the likeliest draw is weighted least
    p.append(experience(3))
    assert p.errors[-1] == pytest.approx(1.0)  # the largest error seen so far (the initial 1.0)


def test_equal_errors_favour_answers_that_were_good_for_little_carbon():
    profile = ExpertProfile(catalog())
    p = pool(priority="td", alpha=1.0, green_weight=1.0)
    p.append(experience(0, quality=1.0, carbon_g=float(profile.carbon.max())))  # good but dirty
    p.append(experience(1, quality=1.0, carbon_g=0.0))  # good and clean
    p.append(experience(2, quality=0.0, carbon_g=0.0))  # clean but wrong
    p.update(np.arange(3), np.full(3, 0.1))
    probs = p.probabilities()
    assert probs[1] > probs[0] > probs[2]


def test_capacity_drops_the_oldest_with_its_priority():
    p = pool(capacity=3)
    for i in range(5):
        p.append(experience(i, quality=i / 10))
    assert len(p) == 3 and [e.quality for e in p] == [0.2, 0.3, 0.4]
    assert len(p.errors) == len(p.efficiency) == 3
    with pytest.raises(ValueError, match="empty"):
        pool().sample(1, np.random.default_rng(0))
    assert pool().sample(0, np.random.default_rng(0))[1] == []


@pytest.mark.parametrize("name", ["rl", "moe"])
def test_strategies_report_errors_that_learning_shrinks_and_accept_weights(name):
    torch.set_num_threads(1)
    config = {"embedding_dim": DIM, "hidden": [8], "seed": 0}
    strategy = build_strategy(name, catalog(), {**config, "learning_rate": 0.05})
    batch = [experience(0, quality=1.0), experience(1, quality=0.0, expert=1)]
    before = strategy.errors(batch)
    assert before.shape == (2,) and (before >= 0).all()
    for _ in range(60):
        strategy.learn(batch, np.array([1.0, 0.5]))
    assert strategy.errors(batch).sum() < before.sum() * 0.5
    with pytest.raises(ValueError, match="at least one"):
        strategy.errors([])


@pytest.mark.parametrize("priority", ["td", "uniform"])
def test_the_learner_replays_by_the_strategies_errors(tmp_path, priority):
    from tests.unit.training.online.test_learner import catalog as learner_catalog
    from tests.unit.training.online.test_learner import feed, learner_config
    from training.online.learner import OnlineLearner

    learner = OnlineLearner(learner_config(tmp_path, replay={"priority": priority}), learner_catalog())
    feed(learner, 60)
    for t in learner.trainees.values():
        errors = np.array(t.replay.errors)
        assert len(errors) == 60 and t.updates > 0 and (errors >= 0).all()
        # Prioritised: replayed experiences got the strategy's own errors, no longer all at the initial largest
        # error, and draws follow them. Uniform: nothing is reported back and every draw is alike.
        assert (errors < t.replay.max_error).any() == (priority == "td")
        assert (np.ptp(t.replay.probabilities()) > 0) == (priority == "td")


def test_a_mistyped_replay_or_blend_setting_is_refused_naming_it(tmp_path):
    from pydantic import ValidationError

    from router_deployments.strategies.outcome_head import OutcomeHeadConfig
    from tests.unit.training.online.test_learner import learner_config

    with pytest.raises(ValidationError, match="priority"):
        learner_config(tmp_path, replay={"priority": "tderror"})
    with pytest.raises(ValidationError, match="alpah"):
        learner_config(tmp_path, replay={"alpah": 0.5})
    with pytest.raises(ValidationError, match="blend"):
        OutcomeHeadConfig(blend="evidense")
