"""`routerllm bench-budget`: budget-aware policies over carbon-budget windows (training/benchmarks/budget.py)."""

from __future__ import annotations

import argparse
import time

from training.commands.common import add_data_options, names
from training.options import parse_dotted


def add_command(subparsers: argparse._SubParsersAction) -> None:
    from training.benchmarks.budget_policies import POLICIES

    parser = subparsers.add_parser(
        "bench-budget",
        help="replay held-out prompts in carbon-budget windows through the budget-aware policies",
        description="Writes <out>/results.json and <out>/budget_quality_carbon.png and prints a table "
        "(see training/benchmarks/budget.py).",
    )
    parser.add_argument("--train", required=True, help="RouterBench CSV or directory to train on")
    parser.add_argument("--eval", default=None, help="CSV or directory to evaluate on (default: hold out --split)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--carbon-budget-frac",
        default="0.4,0.2",
        help="comma list F[,F2,...]: each window's carbon budget as a share of always-largest's carbon on it",
    )
    parser.add_argument("--window", type=int, default=50, help="requests per budget window")
    parser.add_argument("--split", type=float, default=0.3, help="held-out fraction when --eval is not given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the stream order and the training")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma list of budget-aware policies")
    parser.add_argument("--limit", type=int, default=None, help="at most N prompts per table (quick runs)")
    parser.add_argument(
        "--guard", action=argparse.BooleanOptionalAction, default=True, help="route through the budget guard"
    )
    parser.add_argument(
        "--set",
        dest="set_options",
        action="append",
        default=[],
        metavar="POLICY.OPTION=VALUE",
        help="a trainer option of rl (rl_bn shares it) or moe, e.g. rl.total_steps=20000 (repeatable)",
    )
    parser.add_argument(
        "--predictor", default="moe", choices=["moe", "knn"], help="quality predictor of the two baselines"
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm bars")
    add_data_options(parser)
    parser.set_defaults(run=run_bench_budget)


def run_bench_budget(args: argparse.Namespace) -> int:
    from training.benchmarks.budget import BudgetBenchConfig, run_budget_bench
    from training.benchmarks.budget_report import budget_table

    try:
        fracs = [float(f) for f in names(args.carbon_budget_frac)]
    except ValueError as e:
        raise ValueError(f"--carbon-budget-frac takes a comma list of numbers, got {args.carbon_budget_frac!r}") from e
    config = BudgetBenchConfig(
        train=args.train,
        eval=args.eval,
        out=args.out,
        experts=args.experts,
        budget_fracs=fracs,
        window=args.window,
        split=args.split,
        seed=args.seed,
        policies=names(args.policies),
        limit=args.limit,
        options=parse_dotted(args.set_options, "--set"),
        guard=args.guard,
        predictor=args.predictor,
        embedder=args.embedder,
        progress=args.progress,
    )
    started = time.perf_counter()
    results = run_budget_bench(config)
    print(budget_table(results))
    elapsed = time.perf_counter() - started
    print(f"wrote {args.out}/results.json and {args.out}/budget_quality_carbon.png in {elapsed:.0f} s")
    return 0
