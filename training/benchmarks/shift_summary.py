"""Many `bench-online --shift` runs summed up: the README's shift tables, from the runs' results.json.

    python -m training.benchmarks.shift_summary runs/shift [more dirs] [--out runs/shift]

Every results.json under the given directories that ran the shift scenario is read and grouped by (experts, lam).
Per group and router: phase 2's average reward as the mean and standard error over the runs; its difference
against the reference router (VW by default) on the same stream and draw, paired run by run, with the number of
runs above it; and the catch-up, the most requests any run took to come within the plan's tolerance of phase 2's
best fixed expert, and how many runs did so within `--within` requests (500, the issue's target). Prints the table
and writes summary.json and phase2.png (mean and standard error per router and group) under --out.

Two runs of the same group with the same stream and draw (`--seed`, `--sampling-seed`) are an error naming both:
counting one twice would shrink the standard error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "vw-squarecb"


def load_runs(directories: list[str | Path]) -> list[dict[str, Any]]:
    """The shift runs under `directories` (results.json with a `shift` entry), each with its path; a ValueError
    when there are none or two share a group, stream and draw."""
    runs, seen = [], {}
    for directory in directories:
        for path in sorted(Path(directory).rglob("results.json")):
            results = json.loads(path.read_text())
            if "shift" not in results:
                continue
            config = results["config"]
            sampling = config.get("sampling_seed")
            key = (config["experts"], config["lam"], config["seed"], config["seed"] if sampling is None else sampling)
            if key in seen:
                raise ValueError(
                    f"{seen[key]} and {path} are the same run (experts {key[0]}, lam {key[1]}, seed {key[2]}, "
                    f"draw {key[3]}): summarise one of them"
                )
            seen[key] = path
            runs.append({"path": str(path), **results})
    if not runs:
        raise ValueError(f"no results.json of a --shift run under {[str(d) for d in directories]}")
    return runs


def _mean_se(values: list[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=np.float64)
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "se": se}


def summarise(runs: list[dict[str, Any]], reference: str = REFERENCE, within: int = 500) -> list[dict[str, Any]]:
    """One cell per (experts, lam), sorted by both: runs, phase 2's best fixed expert (mean reward over
    the runs) and per router its phase-2 reward, its paired difference against `reference` (None in a cell
    where some run lacks it) and its catch-up."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["config"]["experts"], run["config"]["lam"]), []).append(run)
    cells = []
    for (experts, lam), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        names = [n for n in members[0]["shift"]["routers"] if all(n in m["shift"]["routers"] for m in members)]
        has_reference = reference in names
        routers = {}
        for name in names:
            phase2 = [m["shift"]["routers"][name]["phases"][1]["average_reward"] for m in members]
            catch = [m["shift"]["routers"][name]["requests_to_catch_up"] for m in members]
            entry: dict[str, Any] = {
                "phase2": _mean_se(phase2),
                "catch_up_max": max((c for c in catch if c is not None), default=None),
                "caught_up_within": sum(c is not None and c <= within for c in catch),
                "never_caught_up": sum(c is None for c in catch),
            }
            if has_reference and name != reference:
                ref = [m["shift"]["routers"][reference]["phases"][1]["average_reward"] for m in members]
                diff = [a - b for a, b in zip(phase2, ref)]
                entry["vs_reference"] = {**_mean_se(diff), "wins": sum(d > 0 for d in diff)}
            routers[name] = entry
        best = [m["shift"]["phases"][1]["best_fixed"]["average_reward"] for m in members]
        cells.append(
            {
                "experts": experts,
                "lam": lam,
                "runs": len(members),
                "within": within,
                "reference": reference if has_reference else None,
                "phase2_best_fixed": float(np.mean(best)),
                "routers": routers,
            }
        )
    return cells


def table(cells: list[dict[str, Any]]) -> str:
    """The cells as a markdown table, a row per (experts, lam) and router."""
    lines = [
        "| preset, lam | runs | phase 2 best fixed | router | phase 2 | - reference (runs above) "
        "| most requests to catch up | caught up within |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        for name, r in cell["routers"].items():
            p2, vs = r["phase2"], r.get("vs_reference")
            against = f"{vs['mean']:+.3f} ± {vs['se']:.3f} ({vs['wins']}/{cell['runs']})" if vs else ""
            lines.append(
                f"| {cell['experts']}, {cell['lam']} | {cell['runs']} | {cell['phase2_best_fixed']:.3f} | {name} "
                f"| {p2['mean']:.3f} ± {p2['se']:.3f} | {against} | {r['catch_up_max']} "
                f"| {r['caught_up_within']}/{cell['runs']} ({cell['within']}) |"
            )
    return "\n".join(lines)


def plot(cells: list[dict[str, Any]], path: str | Path) -> None:
    """phase2.png: phase 2's mean reward and standard error per router, a group of bars per (experts, lam), and
    the group's best fixed expert as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for c in cells for n in c["routers"]))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(2.2 + 1.8 * len(cells), 4.5))
    for i, name in enumerate(names):
        xs = [k + (i - (len(names) - 1) / 2) * width for k, c in enumerate(cells) if name in c["routers"]]
        stats = [c["routers"][name]["phase2"] for c in cells if name in c["routers"]]
        ax.bar(xs, [s["mean"] for s in stats], width, yerr=[np.nan_to_num(s["se"]) for s in stats], label=name)
    for k, c in enumerate(cells):
        ax.hlines(c["phase2_best_fixed"], k - 0.45, k + 0.45, colors="black", linestyles="dashed")
    ax.set_xticks(range(len(cells)), [f"{c['experts']}, lam {c['lam']}\n{c['runs']} runs" for c in cells])
    lows = [s["phase2"]["mean"] for c in cells for s in c["routers"].values()] + [c["phase2_best_fixed"] for c in cells]
    ax.set_ylim(max(0.0, min(lows) - 0.1), None)
    ax.set_ylabel("average reward after the shift (phase 2)")
    ax.set_title("Shift scenario: phase 2, mean ± standard error (dashed: best fixed expert)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", help="directories holding bench-online --shift runs")
    parser.add_argument("--out", default=None, help="where summary.json and phase2.png go (default: the first one)")
    parser.add_argument("--reference", default=REFERENCE, help="router the others are paired against")
    parser.add_argument("--within", type=int, default=500, help="requests the catch-up target allows")
    args = parser.parse_args(argv)
    try:
        cells = summarise(load_runs(args.directories), reference=args.reference, within=args.within)
    except ValueError as e:
        raise SystemExit(f"shift_summary: {e}") from e
    out = Path(args.out or args.directories[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(cells, indent=2))
    plot(cells, out / "phase2.png")
    print(table(cells))
    print(f"wrote {out}/summary.json and {out}/phase2.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
