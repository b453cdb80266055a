"""The text tables the benchmark commands print, read from the results dict they write to results.json."""

from __future__ import annotations

from typing import Any


def bench_table(results: dict[str, Any]) -> str:
    """`routerllm bench`: a compact text table of every router and single expert."""

    def fmt(x: float | None, spec: str = ".3f") -> str:
        return "-" if x is None else format(x, spec)

    header = f"{'router':<24}{'quality':>8}{'$/1k':>8}{'AIQ':>7}{'q@25%':>7}{'q@50%':>7}{'match':>7}{'ms p50':>8}"
    lines = [header, "-" * len(header)]
    rows = [(n, r, r["default"]) for n, r in results["routers"].items()]
    rows += [(n, e, e) for n, e in results["single_experts"].items()]
    for name, entry, point in rows:
        latency = entry.get("latency_ms", {}).get("p50")
        lines.append(
            f"{name[:23]:<24}{point['quality']:>8.3f}{point['cost_per_1k']:>8.3f}{entry['aiq']:>7.3f}"
            f"{fmt(entry['best_quality_at_25pct']):>7}{fmt(entry['best_quality_at_50pct']):>7}"
            f"{fmt(entry['cost_fraction_to_match_best_expert'], '.0%'):>7}{fmt(latency, '.2f'):>8}"
        )
    top, best = results["priciest_expert"], results["best_expert"]
    lines.append(
        f"quality/$ at default weights; q@25%/q@50%: best quality at <= 25%/50% of {top['name']}'s cost "
        f"(${top['cost_per_1k']:.3f}/1k); match: cost to reach {best['name']}'s quality "
        f"({best['quality']:.3f}) as a share of its cost"
    )
    return "\n".join(lines)


def online_table(results: dict[str, Any]) -> str:
    """`routerllm bench-online`: average reward over the stream, per pass, and the final greedy policy held out."""
    passes = results["config"]["passes"]
    header = f"{'router':<20}{'avg reward':>11}" + "".join(f"{f'pass {p + 1}':>8}" for p in range(passes))
    header += f"{'held-out q':>11}{'$/1k':>8}{'reward':>8}{'wall s':>8}"
    lines = [header, "-" * len(header)]
    for name, r in results["routers"].items():
        h = r["held_out"]
        lines.append(
            f"{name:<20}{r['average_reward']:>11.4f}"
            + "".join(f"{x:>8.3f}" for x in r["per_pass"])
            + f"{h['quality']:>11.3f}{h['cost_per_1k']:>8.3f}{h['reward']:>8.3f}{r['wall_s']:>8.0f}"
        )
    refs = results["references"]
    lines.append(
        f"references (average reward over the stream): best fixed {refs['best_fixed']['expert']} "
        f"{refs['best_fixed']['average_reward']:.4f}, oracle {refs['oracle']['average_reward']:.4f}, "
        f"random {refs['random']['average_reward']:.4f}"
    )
    return "\n".join(lines)
