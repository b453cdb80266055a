"""The hard carbon-budget guard: the best affordable expert, the reserve for the rest of the window, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from router_deployments.budget_guard import affordable, guard_choice, reserve_for

CARBON = np.array([10.0, 5.0, 2.0, 1.0])  # the dirtiest first, the greenest last


def test_the_strategy_choice_goes_through_when_it_fits():
    decision = guard_choice([0.9, 0.5, 0.4, 0.1], CARBON, carbon_left=100.0, reserve=50.0)
    assert decision.index == decision.preferred == 0 and not decision.overridden
    assert decision.affordable.tolist() == [True] * 4


def test_the_best_affordable_expert_replaces_one_that_does_not_fit():
    # 12 left, 7 reserved for the rest of the window: 5 to spend, so experts 1, 2 and 3 fit.
    decision = guard_choice([0.9, 0.2, 0.6, 0.1], CARBON, carbon_left=12.0, reserve=7.0)
    assert decision.preferred == 0 and decision.index == 2 and decision.overridden
    assert decision.affordable.tolist() == [False, True, True, True]


def test_nothing_fits_goes_to_the_greenest_and_ties_go_greener():
    assert guard_choice([0.9, 0.8, 0.7, 0.1], CARBON, carbon_left=0.5).index == 3
    assert guard_choice([0.5, 0.5, 0.5, 0.5], CARBON, carbon_left=100.0).index == 3
    two_greenest = np.array([3.0, 1.0, 1.0])
    assert guard_choice([0.0, 0.2, 0.7], two_greenest, carbon_left=0.0).index == 2  # best of the greenest


def test_reserve_and_affordable():
    assert reserve_for(CARBON, 7) == 7.0 and reserve_for(CARBON, -2) == 0.0
    # A sum of floats that lands a hair over the limit still fits.
    assert affordable(np.array([0.3]), 0.1 + 0.2, 0.0).tolist() == [True]
    assert affordable(CARBON, 6.0, 1.0).tolist() == [False, True, True, True]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one score and one carbon"):
        guard_choice([1.0, 2.0], CARBON, 10.0)
    with pytest.raises(ValueError, match="non-negative"):
        guard_choice([1.0, 2.0], [1.0, -1.0], 10.0)
    with pytest.raises(ValueError, match="one score"):
        guard_choice([], [], 10.0)


@pytest.mark.parametrize("seed", range(5))
def test_a_guarded_window_never_ends_over_a_budget_that_covers_the_greenest(seed):
    """Random preferences, any budget from the greenest expert's carbon for every request up: never over."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    budget = CARBON.min() * n * rng.uniform(1.0, 8.0)
    left = budget
    for t in range(n):
        expert = guard_choice(rng.normal(size=4), CARBON, left, reserve_for(CARBON, n - t - 1)).index
        left -= CARBON[expert]
    assert left >= -1e-9 * budget
