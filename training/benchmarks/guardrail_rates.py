"""How often the publish guardrail refuses a good candidate or lets a bad one through, measured by replay.

Every RouterBench prompt records every expert's outcome, so each policy's true value on the table is known. A trial
draws a live policy and a candidate from a pool of known values (the candidate equals the live policy except on a
random share of prompts, where it calls another expert), logs a held-back slice the way the learner does (the live
policy routing with epsilon of uniform exploration, probabilities logged, the recorded reward of the expert taken),
and asks each rule whether it would publish:
- `point`: the old rule, refuse when SNIPS(candidate) < SNIPS(live) - 0.02 (a point estimate);
- `bound`: refuse when the upper end of the bootstrap interval of the paired IPS (SNIPS-style) advantage is below
  -margin (guardrails.compare_policies);
- `dr`: the same refusal on the doubly-robust advantage (guardrails.dr_compare), and `switch_dr` on its SWITCH
  variant (no residual correction below probability SWITCH). The direct model stands in for the head: per (task,
  expert) mean reward of what the live policy logged on the rest of the table (outside the slice, with the same
  exploration), shrunk (`DIRECT_PRIOR` pseudo-counts) to the expert's mean reward on those same prompts, every
  expert's outcome counted (the catalog's quality prior and prices, which the head takes as its prior mean, rated on
  prompts outside the slice: never the slice's own outcomes, which would leak the answer into the estimate).
A false refusal is refusing a candidate that is truly at least as good as the live policy; a false accept is
publishing one truly worse by more than `worse_by`.

    python -m training.benchmarks.guardrail_rates --data ../shared/data/routerbench --experts seed4 --lam 0.1 \
        --out runs/guardrails
writes results.json and rates.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.data.prepared import load_tables
from training.online.guardrails import below_margin, compare_policies, dr_compare
from training.rewards import bandit_reward

POINT_MARGIN = 0.02
"""The margin of the point-estimate rule (the learner's default before the confidence bound)."""
DIRECT_PRIOR = 5.0
"""Pseudo-counts shrinking the direct model's per-(task, expert) mean to the expert's mean reward off the slice."""
SWITCH = 0.05
"""The SWITCH-DR rule's threshold: logged choices less likely than this get no residual correction."""
RULES = ("point", "bound", "dr", "switch_dr")


def policy_pool(rewards: np.ndarray, rng: np.random.Generator, shares=(0.1, 0.3, 1.0)) -> list[np.ndarray]:
    """Policies as one choice per prompt: every fixed expert, and each of them switched to another expert on a
    random share of prompts."""
    n, k = rewards.shape
    pool = [np.full(n, j) for j in range(k)]
    for base in range(k):
        for other in range(k):
            for share in shares if other != base else ():
                choice = np.full(n, base)
                choice[rng.random(n) < share] = other
                pool.append(choice)
    return pool


def log_live(rewards, live, rows, epsilon, rng) -> tuple[np.ndarray, np.ndarray]:
    """(expert taken, its probability) on `rows` under the live policy with epsilon of uniform exploration."""
    k = rewards.shape[1]
    explore = rng.random(len(rows)) < epsilon
    logged = np.where(explore, rng.integers(0, k, len(rows)), live[rows])
    return logged, np.where(logged == live[rows], 1 - epsilon + epsilon / k, epsilon / k)


def direct_model(rewards, tasks, live, slice_rows, epsilon, rng) -> np.ndarray:
    """[n, k] modelled reward of every expert on every prompt, fitted on what the live policy logs outside the
    slice (see the module docstring)."""
    n, k = rewards.shape
    rows = np.setdiff1d(np.arange(n), slice_rows)
    logged, _ = log_live(rewards, live, rows, epsilon, rng)
    r = rewards[rows, logged]
    expert = rewards[rows].mean(axis=0)  # the catalog, rated on prompts outside the slice (the head's prior mean)
    codes, task_of = np.unique(tasks, return_inverse=True)
    cell = task_of[rows] * k + logged
    count = np.bincount(cell, minlength=len(codes) * k).reshape(-1, k)
    total = np.bincount(cell, r, minlength=len(codes) * k).reshape(-1, k)
    return ((total + DIRECT_PRIOR * expert) / (count + DIRECT_PRIOR))[task_of]


def trial(rewards, tasks, live, candidate, rows, epsilon, rng, confidence, margin, min_matches) -> dict[str, bool]:
    """Log `rows` under the live policy with epsilon exploration, then ask every rule whether to refuse."""
    logged, propensity = log_live(rewards, live, rows, epsilon, rng)
    estimate = compare_policies(
        candidate[rows],
        live[rows],
        logged,
        rewards[rows, logged],
        propensity,
        min_propensity=0.05,
        min_matches=min_matches,
        confidence=confidence,
        seed=int(rng.integers(2**31)),
    )
    point = estimate["checked"] and estimate["candidate"] < estimate["live"] - POINT_MARGIN
    direct = direct_model(rewards, tasks, live, rows, epsilon, rng)[rows]
    dr_seed = int(rng.integers(2**31))
    dr = {
        name: dr_compare(
            candidate[rows],
            live[rows],
            logged,
            rewards[rows, logged],
            propensity,
            direct,
            min_propensity=0.05,
            min_matches=min_matches,
            switch=switch,
            confidence=confidence,
            seed=dr_seed,
        )
        for name, switch in (("dr", 0.0), ("switch_dr", SWITCH))
    }
    return {
        "point": bool(point),
        "bound": below_margin(estimate, margin),
        **{name: below_margin(e, margin) for name, e in dr.items()},
        "checked": bool(estimate["checked"]),
    }


def measure(
    rewards: np.ndarray, tasks: np.ndarray, *, trials: int, holdback: int, epsilon: float, seed: int, **rule
) -> dict[str, Any]:
    """False-refusal and false-accept rates of every rule over `trials` random (live, candidate) pairs."""
    rng = np.random.default_rng(seed)
    pool = policy_pool(rewards, rng)
    values = np.array([rewards[np.arange(len(rewards)), p].mean() for p in pool])
    counts = {rule_name: {"false_refusals": 0, "false_accepts": 0} for rule_name in RULES}
    better = worse = unchecked = 0
    for _ in tqdm(range(trials), desc=f"eps {epsilon}, holdback {holdback}", leave=False):
        i, j = rng.choice(len(pool), 2, replace=False)
        gap = values[j] - values[i]
        if -rule["worse_by"] <= gap < 0:
            continue  # slightly worse: neither decision is an error
        rows = rng.choice(len(rewards), holdback, replace=False)
        refused = trial(
            rewards,
            tasks,
            pool[i],
            pool[j],
            rows,
            epsilon,
            rng,
            rule["confidence"],
            rule["margin"],
            rule["min_matches"],
        )
        better += int(gap >= 0)
        worse += int(gap < 0)
        unchecked += int(not refused.pop("checked"))
        for name, refuse in refused.items():
            counts[name]["false_refusals"] += int(refuse and gap >= 0)
            counts[name]["false_accepts"] += int(not refuse and gap < 0)
    return {
        "epsilon": epsilon,
        "holdback": holdback,
        "better_candidates": better,
        "worse_candidates": worse,
        "unchecked_share": unchecked / max(better + worse, 1),
        **{
            name: {
                "false_refusal_rate": c["false_refusals"] / max(better, 1),
                "false_accept_rate": c["false_accepts"] / max(worse, 1),
            }
            for name, c in counts.items()
        },
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Bars of both error rates of every rule, per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"eps {r['epsilon']}\nslice {r['holdback']}" for r in results]
    x = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(results)), 4))
    bars = [(name, key) for key in ("false_refusal_rate", "false_accept_rate") for name in RULES]
    width = 0.8 / len(bars)
    for k, (rule_name, key) in enumerate(bars):
        offset = (k - (len(bars) - 1) / 2) * width
        ax.bar(x + offset, [r[rule_name][key] for r in results], width, label=f"{rule_name}: {key}")
    ax.set_xticks(x, labels)
    ax.set_ylabel("rate")
    ax.set_title("publish guardrail errors by replay: point estimate vs IPS and DR bounds", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="RouterBench directory")
    parser.add_argument("--experts", default="seed4", help="preset or comma list of model columns")
    parser.add_argument("--lam", type=float, default=0.1, help="cost weight of the reward")
    parser.add_argument("--trials", type=int, default=400, help="(live, candidate) pairs per setting")
    parser.add_argument("--epsilons", default="0.05,0.2", help="exploration rates of the logging policy")
    parser.add_argument("--holdbacks", default="200,512", help="held-back slice sizes")
    parser.add_argument("--confidence", type=float, default=0.9, help="two-sided confidence of the bound")
    parser.add_argument("--margin", type=float, default=0.0, help="refuse when the upper bound < -margin")
    parser.add_argument("--worse-by", type=float, default=0.02, help="a candidate this much worse must be refused")
    parser.add_argument("--min-matches", type=int, default=20, help="agreeing experiences needed for a check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    table, _ = load_tables(args.data, args.experts, split=0.3, seed=args.seed)
    rewards = bandit_reward(table.scores, table.costs, args.lam, float(table.costs.mean(axis=0).max()))
    rule = {"confidence": args.confidence, "margin": args.margin, "worse_by": args.worse_by}
    rule["min_matches"] = args.min_matches
    results = [
        measure(rewards, table.tasks, trials=args.trials, holdback=h, epsilon=e, seed=args.seed, **rule)
        for e in (float(v) for v in args.epsilons.split(","))
        for h in (int(v) for v in args.holdbacks.split(","))
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    plot(results, out / "rates.png")
    for r in results:
        print(
            f"eps {r['epsilon']} slice {r['holdback']}: better {r['better_candidates']} worse {r['worse_candidates']} "
            f"unchecked {r['unchecked_share']:.2f} | "
            + " | ".join(
                f"{n}: false refusals {r[n]['false_refusal_rate']:.3f}, false accepts {r[n]['false_accept_rate']:.3f}"
                for n in RULES
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
