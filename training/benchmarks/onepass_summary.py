"""Many `bench-online` runs without the shift summed up, and one set of runs paired against another.

    python -m training.benchmarks.onepass_summary runs/variant [more dirs] [--against runs/base] [--out DIR]

Every results.json under the given directories that did not run the shift scenario is read and grouped by
(experts, lam). Per group and router: the average reward over the stream and the final greedy policy's reward on
the held-out prompts, each as the mean and standard error over the runs, and on how many runs each beats the best
fixed expert (and VW, where it ran). This is what the issue's one-pass target reads.

With `--against`, the runs there are the base a change is judged on: each run is paired with the base run of the
same stream and draw (experts, lam, `--seed`, `--sampling-seed`) and each router with the base's router of the same
name (`--base-router NAME` pairs every router with that one instead, e.g. a base that ran rl alone where rl and moe
are the same router cold). The paired differences (stream and held out) come as mean, standard error and the number
of runs above the base. A run without its partner is an error naming it; so is one stream and draw counted twice.
Prints the table and writes summary.json and onepass.png under --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

VW = "vw-squarecb"


def run_key(results: dict[str, Any]) -> tuple:
    """(experts, lam, seed, draw): the stream and the routers' own draws; the draw is the seed when unset."""
    config = results["config"]
    sampling = config.get("sampling_seed")
    return (config["experts"], config["lam"], config["seed"], config["seed"] if sampling is None else sampling)


def load_runs(directories: list[str | Path]) -> dict[tuple, dict[str, Any]]:
    """The runs without the shift under `directories`, by run_key, each with its path; a ValueError when there are
    none or two share a key."""
    runs: dict[tuple, dict[str, Any]] = {}
    for directory in directories:
        for path in sorted(Path(directory).rglob("results.json")):
            results = json.loads(path.read_text())
            if "shift" in results or "routers" not in results or "config" not in results:
                continue
            key = run_key(results)
            if key in runs:
                raise ValueError(
                    f"{runs[key]['path']} and {path} are the same run (experts {key[0]}, lam {key[1]}, seed {key[2]}, "
                    f"draw {key[3]}): summarise one of them"
                )
            runs[key] = {"path": str(path), **results}
    if not runs:
        raise ValueError(f"no results.json of a bench-online run without --shift under {[str(d) for d in directories]}")
    return runs


def _mean_se(values: list[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=np.float64)
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "se": se}


def _paired(a: list[float], b: list[float]) -> dict[str, Any]:
    diff = [x - y for x, y in zip(a, b)]
    return {**_mean_se(diff), "wins": sum(d > 0 for d in diff)}


def summarise(
    runs: dict[tuple, dict[str, Any]],
    base: dict[tuple, dict[str, Any]] | None = None,
    base_router: str | None = None,
) -> list[dict[str, Any]]:
    """One cell per (experts, lam), sorted by both: runs, the best fixed expert (stream and held out, means over the
    runs) and per router its stream and held-out rewards, its wins over the best fixed expert and VW, and with
    `base` its paired differences against the base run's router. A ValueError names a run without a base partner."""
    groups: dict[tuple, list[tuple]] = {}
    for key in runs:
        groups.setdefault(key[:2], []).append(key)
    cells = []
    for (experts, lam), keys in sorted(groups.items()):
        keys.sort()
        members = [runs[k] for k in keys]
        best_stream = [m["references"]["best_fixed"]["average_reward"] for m in members]
        best_held = [m["references"]["best_fixed"]["held_out"]["reward"] for m in members]
        names = [n for n in members[0]["routers"] if all(n in m["routers"] for m in members)]
        routers = {}
        for name in names:
            stream = [m["routers"][name]["average_reward"] for m in members]
            held = [m["routers"][name]["held_out"]["reward"] for m in members]
            entry: dict[str, Any] = {
                "stream": _mean_se(stream),
                "held_out": _mean_se(held),
                "stream_beats_best_fixed": sum(s > b for s, b in zip(stream, best_stream)),
                "held_out_beats_best_fixed": sum(h > b for h, b in zip(held, best_held)),
            }
            if name != VW and VW in names:
                vw = [m["routers"][VW]["average_reward"] for m in members]
                entry["stream_beats_vw"] = sum(s > v for s, v in zip(stream, vw))
            if base is not None:
                partner = base_router or name
                missing = [runs[k]["path"] for k in keys if k not in base or partner not in base[k]["routers"]]
                if missing:
                    raise ValueError(f"{missing[0]} has no base run with router {partner} on the same stream and draw")
                entry["against_base"] = {
                    "router": partner,
                    "stream": _paired(stream, [base[k]["routers"][partner]["average_reward"] for k in keys]),
                    "held_out": _paired(held, [base[k]["routers"][partner]["held_out"]["reward"] for k in keys]),
                }
            routers[name] = entry
        cells.append(
            {
                "experts": experts,
                "lam": lam,
                "runs": len(members),
                "best_fixed": {"stream": float(np.mean(best_stream)), "held_out": float(np.mean(best_held))},
                "routers": routers,
            }
        )
    return cells


def table(cells: list[dict[str, Any]]) -> str:
    """The cells as a markdown table, a row per (experts, lam) and router."""
    lines = [
        "| preset, lam | runs | best fixed: stream / held out | router | stream | held out "
        "| runs above best fixed: stream / held out | runs above VW | - base: stream (runs above) | - base: held out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ms(s: dict[str, float]) -> str:
        return f"{s['mean']:.4f} ± {s['se']:.4f}"

    def paired(d: dict[str, Any] | None, n: int) -> str:
        return f"{d['mean']:+.4f} ± {d['se']:.4f} ({d['wins']}/{n})" if d else ""

    for cell in cells:
        n, best = cell["runs"], cell["best_fixed"]
        for name, r in cell["routers"].items():
            vw = f"{r['stream_beats_vw']}/{n}" if "stream_beats_vw" in r else ""
            b = r.get("against_base")
            stream_d, held_d = paired(b and b["stream"], n), paired(b and b["held_out"], n)
            lines.append(
                f"| {cell['experts']}, {cell['lam']} | {n} | {best['stream']:.4f} / {best['held_out']:.4f} | {name} "
                f"| {ms(r['stream'])} | {ms(r['held_out'])} "
                f"| {r['stream_beats_best_fixed']}/{n} / {r['held_out_beats_best_fixed']}/{n} | {vw} "
                f"| {stream_d} | {held_d} |"
            )
    return "\n".join(lines)


def plot(cells: list[dict[str, Any]], path: str | Path) -> None:
    """onepass.png: the stream's mean reward and standard error per router, a group of bars per (experts, lam),
    each group's best fixed expert as a dashed line; beside it the same for the held-out prompts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for c in cells for n in c["routers"]))
    width = 0.8 / len(names)
    fig, axes = plt.subplots(1, 2, figsize=(2 * (2.2 + 1.8 * len(cells)), 4.5))
    for ax, part in zip(axes, ("stream", "held_out")):
        for i, name in enumerate(names):
            xs = [k + (i - (len(names) - 1) / 2) * width for k, c in enumerate(cells) if name in c["routers"]]
            stats = [c["routers"][name][part] for c in cells if name in c["routers"]]
            ax.bar(xs, [s["mean"] for s in stats], width, yerr=[np.nan_to_num(s["se"]) for s in stats], label=name)
        for k, c in enumerate(cells):
            ax.hlines(c["best_fixed"][part], k - 0.45, k + 0.45, colors="black", linestyles="dashed")
        ax.set_xticks(range(len(cells)), [f"{c['experts']}, lam {c['lam']}\n{c['runs']} runs" for c in cells])
        lows = [r[part]["mean"] for c in cells for r in c["routers"].values()] + [c["best_fixed"][part] for c in cells]
        ax.set_ylim(max(0.0, min(lows) - 0.1), None)
        ax.set_ylabel("average reward" + (" over the stream" if part == "stream" else " on held-out prompts"))
        ax.set_title(("Stream" if part == "stream" else "Final greedy policy, held out") + " (dashed: best fixed)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", help="directories holding bench-online runs (not --shift)")
    parser.add_argument("--against", nargs="+", default=None, help="directories of the base runs to pair against")
    parser.add_argument("--base-router", default=None, help="the base's router every router is paired with")
    parser.add_argument("--out", default=None, help="where summary.json and onepass.png go (default: the first one)")
    args = parser.parse_args(argv)
    try:
        base = load_runs(args.against) if args.against else None
        cells = summarise(load_runs(args.directories), base=base, base_router=args.base_router)
    except ValueError as e:
        raise SystemExit(f"onepass_summary: {e}") from e
    out = Path(args.out or args.directories[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(cells, indent=2))
    plot(cells, out / "onepass.png")
    print(table(cells))
    print(f"wrote {out}/summary.json and {out}/onepass.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
