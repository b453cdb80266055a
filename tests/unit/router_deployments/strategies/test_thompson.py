"""Thompson sampling from the head's posterior (outcome_head.thompson_probs / thompson_route) and its use by rl and
moe: the logged probabilities are the true ones, and sampling explores only where the posterior is unsure."""

from __future__ import annotations

import numpy as np
import pytest

from router_deployments.strategies import Experience, RouteContext, build_strategy
from router_deployments.strategies.outcome_head import thompson_probs, thompson_route
from tests.unit.router_deployments.strategies.test_outcome_head import DIM, catalog, prompts  # noqa: F401


def monte_carlo(mean: np.ndarray, spread: np.ndarray, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    wins = (mean[:, None, :] + spread[:, None, :] * rng.standard_normal((len(mean), draws, mean.shape[1]))).argmax(2)
    return np.stack([np.bincount(w, minlength=mean.shape[1]) / draws for w in wins])


def test_thompson_probs_match_monte_carlo_and_handle_certain_experts():
    rng = np.random.default_rng(0)
    mean, spread = rng.normal(size=(4, 5)) * 0.3, np.abs(rng.normal(size=(4, 5))) * 0.3 + 1e-3
    p = thompson_probs(mean, spread)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p, monte_carlo(mean, spread, 400_000, seed=1), atol=0.004)
    certain = thompson_probs(np.array([[0.5, 0.2, 0.1]]), np.full((1, 3), 1e-6))
    np.testing.assert_allclose(certain, [[1.0, 0.0, 0.0]], atol=1e-9)
    equal = thompson_probs(np.zeros((1, 3)), np.ones((1, 3)))
    np.testing.assert_allclose(equal, [[1 / 3, 1 / 3, 1 / 3]], atol=1e-6)


def test_thompson_route_draws_as_often_as_the_probabilities_it_logs():
    rng = np.random.default_rng(2)
    scores, spread = np.tile([[0.3, 0.25, 0.0]], (20_000, 1)), np.tile([[0.05, 0.05, 0.05]], (20_000, 1))
    explore = np.full((20_000, 3), 1 / 3)
    chosen, probs = thompson_route(scores, spread, 0.1, explore, rng)
    np.testing.assert_allclose(probs[0], 0.9 * thompson_probs(scores[:1], spread[:1])[0] + 0.1 / 3)
    np.testing.assert_allclose(np.bincount(chosen, minlength=3) / 20_000, probs[0], atol=0.012)


@pytest.mark.parametrize("name", ["rl", "moe"])
def test_strategies_sample_where_the_posterior_is_unsure_and_stop_once_it_is_sure(catalog, name):  # noqa: F811
    config = {"embedding_dim": DIM, "hidden": [8], "head": {"ridge": 1.0}, "network_weight": 0.0, "seed": 3}
    strategy = build_strategy(name, catalog, {**config, "thompson_scale": 0.5})
    ctx = [RouteContext(text="", embedding=e) for e in prompts(400)]
    cold = strategy.route_batch(ctx)
    probs = np.array([d.probs for d in cold])
    assert probs[:, 0].mean() < 0.95 and probs.min() >= 0  # unsure: the other experts get a real chance
    taken = np.array([catalog.index(d.expert) for d in cold])
    np.testing.assert_allclose(np.bincount(taken, minlength=3) / len(taken), probs.mean(axis=0), atol=0.06)
    # 'good' is confirmed good everywhere, the others confirmed poor: the posterior is sure, sampling stops.
    sure = [
        Experience(embedding=e, expert=j, reward=0.0, quality=q)
        for e in prompts(300, 5)
        for j, q in ((0, 1.0), (1, 0.0), (2, 0.0))
    ]
    strategy.observe(sure)
    after = np.array([d.probs for d in strategy.route_batch(ctx)])
    assert after[:, 0].min() > 0.99
    greedy = build_strategy(name, catalog, config)  # thompson_scale 0 (what greedy evaluation publishes)
    assert all(d.probs[0] == 1.0 for d in greedy.route_batch(ctx[:5]))
