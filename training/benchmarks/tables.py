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
    passes = len(next(iter(results["routers"].values()))["per_pass"]) if results["routers"] else 0
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
    if "best_fixed_per_task" in refs:
        per_task = refs["best_fixed_per_task"]
        lines.append(
            f"best fixed per task (hindsight, reads the task label): {per_task['average_reward']:.4f} on the stream, "
            f"{per_task['held_out']['reward']:.4f} held out (best fixed {refs['best_fixed']['held_out']['reward']:.4f})"
        )
    if "full_information" in refs:
        full = refs["full_information"]
        lines.append(
            f"full information (the cold head told every expert's outcome, greedy; no exploration cost): "
            f"{full['average_reward']:.4f} on the stream, {full['held_out']['reward']:.4f} held out"
        )
    if "n_set_aside" in results:
        n = results["n_set_aside"]
        rated = f"{n} set-aside prompts, never streamed" if n else "the stream"
        lines.append(f"{results['n_stream']} requests streamed; the catalog's priors and prices were rated on {rated}")
        if results.get("n_rating_prior"):
            lines.append(
                f"cold heads and VW started from the outcomes of every expert on {results['n_rating_prior']} of them"
            )
    if "shift" in results:
        lines += ["", shift_table(results["shift"])]
    return "\n".join(lines)


def shift_table(shift: dict[str, Any]) -> str:
    """`bench-online --shift`: reward and regret per phase, and requests until caught up after the shift."""
    one, two = shift["phases"]
    plan = shift["plan"]
    header = f"{'router':<20}{'phase 1':>9}{'regret/req':>11}{'phase 2':>9}{'regret/req':>11}{'caught up':>11}"
    lines = [
        f"shift at request {plan['shift_at']}: phase 2 is {plan['share']:.0%} {plan['new_task']} "
        f"({plan['length']} requests); caught up = requests until the last {plan['window']} are within "
        f"{plan['tolerance']} of phase 2's best fixed expert",
        header,
        "-" * len(header),
    ]
    for name, r in shift["routers"].items():
        p1, p2 = r["phases"]
        caught = "never" if r["requests_to_catch_up"] is None else str(r["requests_to_catch_up"])
        lines.append(
            f"{name:<20}{p1['average_reward']:>9.4f}{p1['regret_per_request']:>11.4f}"
            f"{p2['average_reward']:>9.4f}{p2['regret_per_request']:>11.4f}{caught:>11}"
        )
    lines.append(
        f"best fixed expert: phase 1 {one['best_fixed']['expert']} {one['best_fixed']['average_reward']:.4f}, "
        f"phase 2 {two['best_fixed']['expert']} {two['best_fixed']['average_reward']:.4f}"
    )
    return "\n".join(lines)
