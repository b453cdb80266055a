"""`routerllm bench-online`: the online learners over a replayed stream (training/benchmarks/online.py)."""

from __future__ import annotations

import argparse
import time

from training.benchmarks.shift import SHIFT_TASK, ShiftPlan
from training.commands.common import add_data_options, names
from training.options import dotted_values, parse_dotted


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench-online",
        help="replay a stream of prompts through the online learners, VW and references (learning while serving)",
        description="Writes <out>/results.json and <out>/learning_curve.png and prints a table "
        "(see training/benchmarks/online.py; its settings: online_setup.py).",
    )
    parser.add_argument("--data", required=True, help="RouterBench CSV or directory")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--passes", type=int, default=None, help="shuffled passes over the training part (default 3; 1 with --shift)"
    )
    parser.add_argument("--lam", type=float, default=0.1, help="cost weight of the reward (score - lam * cost)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the stream order and the learners")
    parser.add_argument(
        "--sampling-seed",
        type=int,
        default=None,
        help="seed of the routers' own draws alone (networks, replay, exploration, VW), on the stream --seed "
        "draws: repeat a setting with other values to measure its spread (default: --seed)",
    )
    parser.add_argument("--holdout", type=float, default=0.3, help="fraction held out to evaluate final policies")
    parser.add_argument(
        "--set-aside",
        type=float,
        default=0.1,
        help="fraction of the rest that rates the experts (the catalog's priors and prices) and is never streamed; "
        "0 rates them on the stream itself",
    )
    parser.add_argument(
        "--rating-prior",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="seed cold learners' heads and VW with every expert's outcome on the set-aside prompts (the rating "
        "benchmark as a per-prompt prior; none with --set-aside 0); --no-rating-prior: cold heads start from the "
        "catalog's means alone",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N prompts (quick runs)")
    parser.add_argument("--strategies", default="rl,moe", help="online learners to run (comma list)")
    parser.add_argument("--starts", default="cold,warm", help="cold and/or warm (from an offline fit)")
    parser.add_argument("--warm-dir", default=None, help="<dir>/<strategy> checkpoints to warm-start from")
    parser.add_argument(
        "--warm-head",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="warm learners' heads observe every expert's outcome on their offline fit's training rows (as "
        "`routerllm rate --from FIT` seeds a served one); --no-warm-head: they start at the catalog's means",
    )
    parser.add_argument("--vw", action=argparse.BooleanOptionalAction, default=True, help="run Vowpal Wabbit")
    parser.add_argument(
        "--full-information",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the full-information reference: the cold head told every expert's outcome on every prompt, routing "
        "greedily (what a learner with this head could reach without paying to explore)",
    )
    parser.add_argument("--window", type=int, default=250, help="requests per point of the learning curve")
    parser.add_argument("--learner", action="append", default=[], metavar="OPTION=VALUE", help="LearnerConfig")
    parser.add_argument(
        "--through-serve",
        action="store_true",
        help="send the stream over HTTP through the real graph (serve run, learner actor, hot-swaps)",
    )
    parser.add_argument("--serve-replicas", type=int, default=2, help="router replicas with --through-serve")
    parser.add_argument(
        "--shift",
        action="store_true",
        help="shift scenario: the old tasks once, then a phase heavy in a task the first phase and the warm starts "
        "never saw (training/benchmarks/shift.py)",
    )
    parser.add_argument("--shift-task", default=SHIFT_TASK, help="the task that appears with the shift")
    parser.add_argument("--shift-length", type=int, default=600, help="requests after the shift")
    parser.add_argument("--shift-share", type=float, default=0.8, help="share of the new task after the shift")
    parser.add_argument(
        "--set",
        dest="set_options",
        action="append",
        default=[],
        metavar="STRATEGY.OPTION=VALUE",
        help="a strategy config field of the online learners, e.g. --set rl.tau=0.05 (repeatable)",
    )
    parser.add_argument(
        "--explore",
        dest="explore_options",
        action="append",
        default=[],
        metavar="START.OPTION=VALUE",
        help="an exploration field of the cold or warm learners (StrategyTraining), e.g. --explore "
        "warm.epsilon_end=0.01 (repeatable)",
    )
    parser.add_argument(
        "--trainer",
        dest="trainer_options",
        action="append",
        default=[],
        metavar="STRATEGY.OPTION=VALUE",
        help="an offline trainer option of the warm-start fits, e.g. --trainer rl.total_steps=5000",
    )
    add_data_options(parser)
    parser.set_defaults(run=run_bench_online)


def run_bench_online(args: argparse.Namespace) -> int:
    """Replay the stream in process, or with --through-serve with the served learners (over_http) in place of the
    in-process ones."""
    from training.benchmarks.online import run_online_bench
    from training.benchmarks.online_setup import OnlineBenchConfig
    from training.benchmarks.tables import online_table

    if args.shift and args.passes not in (None, 1):
        raise ValueError("--shift replays the old tasks once, then the shifted phase: it takes no --passes")
    shift = ShiftPlan(args.shift_task, args.shift_length, args.shift_share) if args.shift else None
    config = OnlineBenchConfig(
        data=args.data,
        out=args.out,
        experts=args.experts,
        passes=1 if args.shift else (args.passes or 3),
        shift=shift,
        lam=args.lam,
        seed=args.seed,
        sampling_seed=args.sampling_seed,
        holdout=args.holdout,
        set_aside=args.set_aside,
        rating_prior=args.rating_prior,
        limit=args.limit,
        strategies=names(args.strategies),
        starts=names(args.starts),
        vw=args.vw,
        full_information=args.full_information,
        window=args.window,
        warm_dir=args.warm_dir,
        warm_head=args.warm_head,
        learner=dotted_values([f"learner.{p}" for p in args.learner], "--learner").get("learner", {}),
        strategy_config=dotted_values(args.set_options, "--set"),
        exploration=dotted_values(args.explore_options, "--explore"),
        trainer_options=parse_dotted(args.trainer_options, "--trainer"),
        embedder=args.embedder,
    )
    extra = None
    if args.through_serve:
        from training.benchmarks.over_http import serve_routers

        # Over HTTP: the served learners replace the in-process ones (the references and VW stay).
        extra = serve_routers(config.strategies, replicas=args.serve_replicas)
        config.strategies = []
    started = time.perf_counter()
    results = run_online_bench(config, extra_routers=extra)
    print(online_table(results))
    print(f"wrote {args.out}/results.json and {args.out}/learning_curve.png in {time.perf_counter() - started:.0f} s")
    return 0
