"""Cost-quality curves of routers: the quality hull, AIQ, best quality within a budget, and expert shares.

A router is described by points (cost per 1,000 requests in USD, mean quality), one per operating point (e.g. per
cost weight of a sweep). Mixing two operating points at random per request reaches every point of the segment
between them (expected cost and quality are both linear in the mixing probability), and spending more is never
forced, so what a router can reach is the **non-decreasing upper convex hull** of its points:

- the hull starts at the router's cheapest point (the best quality among points of that cost);
- between points it follows the upper convex envelope (interpolation = mixing two policies);
- after its best-quality point it stays flat (paying more than needed is allowed, but never helps).

AIQ follows RouterBench (Hu et al. 2024, `evaluation/AIQ.py`): the hull is extended flat to `c_max`, the largest
cost among all compared routers, its area is taken with the trapezoid rule from the router's cheapest point, and
divided by `c_max`, so the cost axis runs from 0. The stretch [0, cheapest cost) counts as zero quality: no policy
in the router's family is that cheap, and extending the cheapest quality flat to the left would credit a quality
nobody reaches at that cost. (Mixing with "refuse to answer" would reach the line from the origin; RouterBench does
not credit that either, and we keep its numbers comparable.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def curve_point(costs_usd: np.ndarray, qualities: np.ndarray) -> tuple[float, float]:
    """One operating point from per-request figures: (USD per 1,000 requests, mean quality)."""
    return float(np.mean(costs_usd) * 1000.0), float(np.mean(qualities))


def _as_points(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise ValueError("a cost-quality curve needs at least one finite (cost, quality) point")
    if (pts[:, 0] < 0).any():
        raise ValueError(f"costs must be >= 0, got {pts[:, 0].min()}")
    return pts


def quality_hull(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The non-decreasing upper convex hull of (cost, quality) points, as [m, 2] vertices sorted by cost."""
    pts = _as_points(points)
    # Keep the best quality at each cost, then walk left to right (Andrew's monotone chain, upper half).
    order = np.lexsort((-pts[:, 1], pts[:, 0]))
    pts = pts[order]
    pts = pts[np.concatenate([[True], np.diff(pts[:, 0]) > 0])]
    hull: list[np.ndarray] = []
    for p in pts:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
            if cross < 0:  # b lies strictly above the segment a-p: it stays on the hull
                break
            hull.pop()
        hull.append(p)
    vertices = np.array(hull)
    # The upper hull is concave: cut it at its peak, beyond which it would only fall.
    return vertices[: int(np.argmax(vertices[:, 1])) + 1]


def hull_quality_at(hull: np.ndarray, cost: float) -> float | None:
    """Best quality reachable at a cost of at most `cost` (None below the router's cheapest point)."""
    if cost < hull[0, 0]:
        return None
    return float(np.interp(cost, hull[:, 0], hull[:, 1]))


def best_quality_within(points: Sequence[Sequence[float]] | np.ndarray, budget: float) -> float | None:
    """Best quality on the hull at cost <= budget (mixing two operating points allowed); None if unreachable."""
    return hull_quality_at(quality_hull(points), budget)


def cost_to_reach(points: Sequence[Sequence[float]] | np.ndarray, target: float) -> float | None:
    """Least cost on the hull reaching mean quality `target`; None if the router never reaches it."""
    hull = quality_hull(points)
    if hull[-1, 1] < target:
        return None
    i = int(np.argmax(hull[:, 1] >= target))
    if i == 0:
        return float(hull[0, 0])
    (x0, y0), (x1, y1) = hull[i - 1], hull[i]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def aiq(points: Sequence[Sequence[float]] | np.ndarray, c_max: float) -> float:
    """Average quality over cost in [0, c_max] under the hull extended flat to c_max (RouterBench's AIQ)."""
    hull = quality_hull(points)
    if c_max <= 0:
        raise ValueError(f"c_max must be > 0, got {c_max}")
    if c_max < hull[-1, 0] * (1 - 1e-9):
        raise ValueError(
            f"c_max={c_max} is below this router's hull, which reaches cost {hull[-1, 0]}; pass the largest "
            "cost among all compared routers"
        )
    extended = np.vstack([hull, [max(c_max, hull[-1, 0]), hull[-1, 1]]])
    x, y = extended[:, 0], extended[:, 1]
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return area / c_max


def expert_shares(choices: Sequence[int] | np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Fraction of requests sent to each expert, in catalog order (choices are expert indices)."""
    counts = np.bincount(np.asarray(choices, dtype=int), minlength=len(names))
    total = max(int(counts.sum()), 1)
    return {name: float(c) / total for name, c in zip(names, counts)}
