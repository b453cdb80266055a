"""`routerllm bench`: the offline benchmark of every strategy on held-out prompts (training/benchmarks/offline.py)."""

from __future__ import annotations

import argparse

from training.benchmarks.offline import DEFAULT_GRID, DEFAULT_STRATEGIES
from training.commands.common import add_data_options, names
from training.options import parse_dotted


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="train strategies and compare their cost-quality curves on held-out RouterBench prompts",
        description="Writes <out>/results.json and <out>/cost_quality.png and prints a table.",
    )
    parser.add_argument("--train", required=True, help="RouterBench CSV or directory to train on")
    parser.add_argument("--eval", default=None, help="CSV or directory to evaluate on (default: hold out --split)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--split", type=float, default=0.3, help="held-out fraction when --eval is not given")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of --limit")
    parser.add_argument(
        "--strategies",
        default=None,
        help=f"comma list (default: {','.join(DEFAULT_STRATEGIES)}, skipping trainers not written yet); "
        "the references knn, task and oracle, and dummy (random), are always included",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N prompts per table (quick runs)")
    parser.add_argument(
        "--set",
        dest="set_options",
        action="append",
        default=[],
        metavar="STRATEGY.OPTION=VALUE",
        help="a trainer option (knn.k=20), or a config field of a strategy without a trainer "
        "(complexity.model=DIR); repeatable",
    )
    parser.add_argument("--save-checkpoints", action="store_true", help="save trained strategies under <out>")
    parser.add_argument(
        "--grid", type=int, default=DEFAULT_GRID, help="cost weights swept per router (each one pass over eval)"
    )
    add_data_options(parser)
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from training.benchmarks.offline import BenchConfig
    from training.benchmarks.offline import run_bench as bench
    from training.benchmarks.tables import bench_table

    strategies = None if args.strategies is None else names(args.strategies)
    config = BenchConfig(
        train=args.train,
        eval=args.eval,
        out=args.out,
        experts=args.experts,
        split=args.split,
        seed=args.seed,
        strategies=strategies,
        limit=args.limit,
        options=parse_dotted(args.set_options, "--set"),
        embedder=args.embedder,
        save_checkpoints=args.save_checkpoints,
        grid=args.grid,
    )
    results = bench(config)
    print(bench_table(results))
    print(f"wrote {args.out}/results.json and {args.out}/cost_quality.png")
    return 0
