"""The two budget baselines: greedy threshold (a margin that widens as the budget drains) and primal-dual (a dual
price on carbon that rises with the overspend), over a real trained predictor (the kNN index)."""

from __future__ import annotations

import numpy as np
import pytest

from router_deployments.strategies import RouteContext, build_strategy
from router_deployments.strategies.greedy_threshold import GreedyThresholdConfig, GreedyThresholdStrategy
from router_deployments.strategies.knn import KnnConfig, KnnStrategy
from router_deployments.strategies.primal_dual import PrimalDualConfig, PrimalDualStrategy
from training.data.routerbench import OutcomeTable, catalog_from_table

MODELS = ["org/big-70b", "org/mid-13b", "org/small-7b"]  # the dirtiest first
# Known quality of each expert on every prompt: big 0.9, mid 0.8, small 0.5.
QUALITY = np.array([0.9, 0.8, 0.5], dtype=np.float32)


def catalog(models=MODELS):
    n = len(models)
    table = OutcomeTable(
        sample_ids=["a"],
        prompts=["a"],
        tasks=["t"],
        models=list(models),
        scores=np.ones((1, n), np.float32),
        costs=np.full((1, n), 1e-4, np.float32),
    )
    return catalog_from_table(table)


def predictor(cat=None) -> KnnStrategy:
    cat = cat or catalog()
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    return KnnStrategy(cat, KnnConfig(k=20)).fit(x, np.tile(QUALITY, (20, 1)))


def ctx(budget_left: float = 1.0, window_left: float = 1.0) -> RouteContext:
    return RouteContext(
        text="p", embedding=np.ones(4, np.float32), carbon_budget_left=budget_left, window_left=window_left
    )


def choice(strategy, **state) -> int:
    return int(np.argmax(strategy.score([ctx(**state)])[0]))


def test_greedy_threshold_takes_the_greenest_within_a_margin_that_widens_as_the_budget_drains():
    greedy = GreedyThresholdStrategy(catalog(), GreedyThresholdConfig(margin=0.05, widen=1.0)).use_predictor(
        predictor()
    )
    assert choice(greedy) == 0  # on pace: only big is within 0.05 of the best
    assert greedy.margins([ctx(0.5, 0.65)]) == pytest.approx([0.2])  # 15% ahead of budget: margin 0.05 + 0.15
    assert choice(greedy, budget_left=0.5, window_left=0.65) == 1  # mid (0.8) is now within the margin
    assert choice(greedy, budget_left=0.1, window_left=0.9) == 2  # far ahead: the greenest
    assert choice(greedy, budget_left=0.9, window_left=0.5) == 0  # budget to spare: margin 0, the best
    # If the guard refuses the choice, the next greenest eligible expert ranks next, then the best predicted.
    scores = greedy.score([ctx(0.5, 0.65)])[0]
    assert scores[1] > scores[0] > scores[2]


def test_primal_dual_prices_carbon_higher_as_the_window_overspends():
    dual = PrimalDualStrategy(catalog(), PrimalDualConfig(price=0.05, step=5.0)).use_predictor(predictor())
    assert choice(dual) == 0  # price 0.05: big's extra 0.1 quality is worth its carbon
    assert dual.prices([ctx(0.7, 0.9)]) == pytest.approx([1.05])
    assert choice(dual, budget_left=0.7, window_left=0.9) == 1  # mid: 0.8 - 1.05 * 13/70 beats big's 0.9 - 1.05
    assert choice(dual, budget_left=0.0, window_left=1.0) == 2  # price 5.05: the greenest
    assert dual.prices([ctx(1.0, 0.2)]) == pytest.approx([0.0])  # budget to spare: never a negative price
    assert dual.price == 0.05  # price_rate 0: the starting price stays


def test_primal_dual_carries_its_price_across_windows_with_price_rate():
    dual = PrimalDualStrategy(catalog(), PrimalDualConfig(price=0.1, step=0.0, price_rate=0.5)).use_predictor(
        predictor()
    )
    dual.score([ctx(0.6, 0.8)])  # 20% overspent
    assert dual.price == pytest.approx(0.2)
    dual.score([ctx(1.0, 0.0), ctx(1.0, 0.2)])  # underspent: the price falls, not below 0
    assert dual.price == 0.0


def test_registered_servable_from_a_predictor_checkpoint(tmp_path):
    knn = predictor()
    knn.save(tmp_path / "knn")
    for name in ("greedy_threshold", "primal_dual"):
        strategy = build_strategy(
            name, catalog(), {"predictor": "knn", "predictor_config": {"k": 20}, "checkpoint": str(tmp_path / "knn")}
        )
        strategy.setup()
        decision = strategy.route(ctx())
        assert decision.expert == "big-70b" and decision.strategy == name
        fresh = build_strategy(name, catalog())
        fresh.setup()
        with pytest.raises(RuntimeError, match="no quality predictor"):
            fresh.route(ctx())


def test_a_predictor_must_predict_quality_over_the_same_experts():
    greedy = GreedyThresholdStrategy(catalog())
    with pytest.raises(ValueError, match="routes over"):
        greedy.use_predictor(predictor(catalog(MODELS[::-1])))
    with pytest.raises(TypeError, match="predicts no per-expert quality"):
        greedy.use_predictor(build_strategy("dummy", catalog()))
    with pytest.raises(ValueError):
        build_strategy("primal_dual", catalog(), {"price": -1.0})
