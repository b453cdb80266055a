"""Cost-quality curve metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from training import cost_quality as metrics


def test_hull_keeps_upper_non_decreasing_envelope():
    points = [(2, 0.5), (1, 0.4), (3, 0.8), (4, 0.7), (3, 0.6), (1, 0.3)]
    # (2, 0.5) lies below the 0.4 -> 0.8 chord (0.6 at cost 2); (4, 0.7) is past the peak; duplicates keep the best.
    assert metrics.quality_hull(points).tolist() == [[1, 0.4], [3, 0.8]]


def test_hull_drops_collinear_points_and_keeps_concave_ones():
    assert metrics.quality_hull([(0, 0), (1, 0.5), (2, 1)]).tolist() == [[0, 0], [2, 1]]
    assert metrics.quality_hull([(1, 0.4), (2, 0.7), (3, 0.8)]).tolist() == [[1, 0.4], [2, 0.7], [3, 0.8]]


def test_hull_of_a_router_that_gets_worse_when_paying_more_is_its_cheap_point():
    assert metrics.quality_hull([(1, 0.9), (3, 0.5)]).tolist() == [[1, 0.9]]


@pytest.mark.parametrize(
    ("points", "c_max", "expected"),
    [
        # One point at cost 2: zero quality on [0, 2), flat 0.5 on [2, 4] -> area 1.0 over 4.
        ([(2, 0.5)], 4, 0.25),
        # Trapezoid 1..3 (0.4 -> 0.8: area 1.2), flat 0.8 on [3, 4] (0.8): 2.0 / 4.
        ([(1, 0.4), (3, 0.8)], 4, 0.5),
        # A dominated point changes nothing.
        ([(1, 0.4), (2, 0.5), (3, 0.8)], 4, 0.5),
        # Concave: 0.55 + 0.75 + 0.8 = 2.1 over 4.
        ([(1, 0.4), (2, 0.7), (3, 0.8)], 4, 0.525),
        # Falling curve: only the cheap point counts, flat to c_max: 0.9 * 3 / 4.
        ([(1, 0.9), (3, 0.5)], 4, 0.675),
        # The point at c_max itself has no area.
        ([(4, 1.0)], 4, 0.0),
    ],
)
def test_aiq_hand_computed(points, c_max, expected):
    assert metrics.aiq(points, c_max) == pytest.approx(expected)


def test_aiq_rejects_a_cost_axis_shorter_than_the_router():
    with pytest.raises(ValueError, match="largest cost among all compared routers"):
        metrics.aiq([(1, 0.4), (3, 0.8)], 2.0)
    with pytest.raises(ValueError, match="at least one"):
        metrics.aiq([(np.nan, 0.5)], 2.0)


def test_best_quality_within_interpolates_and_stays_flat():
    points = [(1, 0.4), (3, 0.8)]
    assert metrics.best_quality_within(points, 0.5) is None  # cheaper than anything the router does
    assert metrics.best_quality_within(points, 1) == pytest.approx(0.4)
    assert metrics.best_quality_within(points, 2) == pytest.approx(0.6)  # half/half mix of the two policies
    assert metrics.best_quality_within(points, 10) == pytest.approx(0.8)


def test_cost_to_reach():
    points = [(1, 0.4), (3, 0.8)]
    assert metrics.cost_to_reach(points, 0.3) == pytest.approx(1.0)
    assert metrics.cost_to_reach(points, 0.6) == pytest.approx(2.0)
    assert metrics.cost_to_reach(points, 0.8) == pytest.approx(3.0)
    assert metrics.cost_to_reach(points, 0.81) is None


def test_curve_point_and_expert_shares():
    assert metrics.curve_point(np.array([0.001, 0.003]), np.array([1.0, 0.0])) == pytest.approx((2.0, 0.5))
    assert metrics.expert_shares([0, 2, 2, 2], ["a", "b", "c"]) == {"a": 0.25, "b": 0.0, "c": 0.75}
