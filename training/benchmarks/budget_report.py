"""The figure and the text table of `routerllm bench-budget`, read from the results dict it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_budget_runs(results: dict[str, Any], path: str | Path) -> None:
    """budget_quality_carbon.png: each policy's quality against its carbon (share of always-largest's), one point
    per budget fraction joined in order; always-largest and the single experts as reference stars; the budgets as
    dotted verticals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    policies = list(dict.fromkeys(r["policy"] for r in results["runs"]))
    for name in policies:
        runs = sorted((r for r in results["runs"] if r["policy"] == name), key=lambda r: r["carbon_frac"])
        ax.plot([r["carbon_frac"] for r in runs], [r["quality"] for r in runs], marker="o", label=name)
    for frac in sorted({r["budget_frac"] for r in results["runs"]}):
        ax.axvline(frac, color="grey", linestyle=":", linewidth=1)
    for name, e in results["single_experts"].items():
        ax.scatter(e["carbon_frac"], e["quality"], marker="*", s=110, color="black", zorder=3)
        ax.annotate(name, (e["carbon_frac"], e["quality"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
    largest = results["always_largest"]
    ax.axhline(largest["quality"], color="black", linestyle="--", linewidth=1, label="always-largest quality")
    ax.set_xlabel("carbon, share of always-largest's (dotted: the budgets)")
    ax.set_ylabel("mean quality (recorded score)")
    config = results["config"]
    ax.set_title(
        f"{config['experts']}: {results['n_eval']} held-out prompts, windows of {config['window']}, "
        f"guard {'on' if config['guard'] else 'off'}",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def budget_table(results: dict[str, Any]) -> str:
    """One line per run: budget, policy, quality (and its gap to always-largest), carbon, windows over budget."""
    largest = results["always_largest"]
    header = (
        f"{'budget':>7} {'policy':<18}{'quality':>8}{'vs largest':>11}{'carbon':>8}"
        f"{'over':>7}{'max over':>9}{'$':>8}{'guarded':>8}{'fit s':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results["runs"]:
        lines.append(
            f"{r['budget_frac']:>7.2f} {r['policy']:<18}{r['quality']:>8.4f}{r['quality'] - largest['quality']:>+11.4f}"
            f"{r['carbon_frac']:>8.3f}{r['windows_over_budget_frac']:>7.1%}{r['max_overrun_frac']:>9.1%}"
            f"{r['cost_usd']:>8.3f}{r['guard_overrides_frac']:>8.1%}{r['fit_s']:>7.1f}"
        )
    lines.append(
        f"always-largest ({largest['expert']}): quality {largest['quality']:.4f}, carbon {largest['carbon_g']:.1f} g, "
        f"${largest['cost_usd']:.3f}; carbon as a share of its; over: windows over budget; "
        "guarded: requests the guard rerouted"
    )
    return "\n".join(lines)
