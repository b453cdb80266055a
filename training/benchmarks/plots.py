"""The figures of the benchmarks: cost-quality curves (`routerllm bench`) and learning curves (`bench-online`).

Both read the results dict the benchmark writes to results.json; matplotlib loads on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _densify(hull: np.ndarray, per_segment: int = 30) -> np.ndarray:
    """Points along straight hull segments, so they stay straight (in linear cost) on a log-cost plot."""
    if len(hull) < 2:
        return hull
    parts = [np.linspace(a, b, per_segment, endpoint=False) for a, b in zip(hull[:-1], hull[1:])]
    return np.vstack([*parts, hull[-1:]])


def plot_cost_quality(results: dict[str, Any], path: str | Path) -> None:
    """`routerllm bench`'s cost_quality.png: one hull line (and its sweep points) per router, single experts as
    labelled points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, entry in results["routers"].items():
        hull = np.asarray(entry["hull"])
        line = _densify(np.vstack([hull, [results["c_max_per_1k"], hull[-1, 1]]]))
        (drawn,) = ax.plot(line[:, 0], line[:, 1], label=f"{name} (AIQ {entry['aiq']:.3f})")
        points = np.array([[p["cost_per_1k"], p["quality"]] for p in entry["curve"]])
        ax.scatter(points[:, 0], points[:, 1], s=10, color=drawn.get_color(), alpha=0.5)
    for name, e in results["single_experts"].items():
        ax.scatter(e["cost_per_1k"], e["quality"], marker="*", s=120, color="black", zorder=3)
        ax.annotate(name, (e["cost_per_1k"], e["quality"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("cost per 1,000 requests (USD, log scale)")
    ax.set_ylabel("mean quality (recorded score)")
    ax.set_title(f"{', '.join(results['experts'])}: {results['n_eval']} held-out prompts", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curves(results: dict[str, Any], path: str | Path) -> None:
    """`routerllm bench-online`'s learning_curve.png: reward per window for every router, with the references as
    horizontal lines and passes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = results["config"]["window"]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, r in results["routers"].items():
        x = (np.arange(len(r["windows"])) + 0.5) * window
        ax.plot(x, r["windows"], marker="o", markersize=3, label=f"{name} (avg {r['average_reward']:.3f})")
    styles = {"oracle": ":", "best_fixed": "--", "random": "-."}
    for key, ref in results["references"].items():
        if key in styles:
            label = f"{key} {ref.get('expert', '')} ({ref['average_reward']:.3f})".replace("  ", " ")
            ax.axhline(ref["average_reward"], color="grey", linestyle=styles[key], linewidth=1, label=label)
    n_train = results["n_train"]
    if "shift" in results:
        _mark_phases(ax, results["shift"])
    else:
        for p in range(1, results["config"]["passes"]):
            ax.axvline(p * n_train, color="black", alpha=0.2)
    ax.set_xlabel("requests served (stream position); vertical lines: pass boundaries or the shift")
    ax.set_ylabel(f"reward per window of {window} (score - {results['config']['lam']} x normalised cost)")
    ax.set_title(f"{results['config']['experts']}: {', '.join(results['experts'])}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _mark_phases(ax, shift: dict[str, Any]) -> None:
    """The shift as a vertical line, each phase's best fixed expert as a dashed segment over its phase."""
    ax.axvline(shift["plan"]["shift_at"], color="black", alpha=0.5)
    for phase in shift["phases"]:
        best = phase["best_fixed"]
        ax.hlines(best["average_reward"], phase["start"], phase["end"], colors="black", linestyles="--", linewidth=1)
        ax.annotate(
            f"best fixed {best['expert']}",
            (phase["start"], best["average_reward"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
