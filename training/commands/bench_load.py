"""`routerllm bench-load`: the CPU graph under load, then under chaos (training/benchmarks/load.py)."""

from __future__ import annotations

import argparse


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench-load",
        help="the CPU graph (replay experts) under load, then under chaos: kills a router replica, an expert "
        "replica and the learner by pid",
        description="Writes <out>/results.json and <out>/load.png and prints the figures (training/benchmarks/"
        "load.py). Loopback only; run it alone on the machine (it starts its own Ray session).",
    )
    parser.add_argument("--data", required=True, help="RouterBench CSV or directory (the replay experts' answers)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--experts", default="seed4", help="preset (seed4, mix4) or comma list of model columns")
    parser.add_argument("--p99-ms", type=float, default=1000.0, help="p99 bound of a sustainable rate (ms)")
    parser.add_argument("--start-rate", type=float, default=2.0, help="first rate of the search (requests/s)")
    parser.add_argument("--max-rate", type=float, default=64.0, help="highest rate the search tries")
    parser.add_argument("--step-s", type=float, default=20.0, help="seconds per search step")
    parser.add_argument("--hold-s", type=float, default=600.0, help="seconds of each hold (plain, then chaos)")
    parser.add_argument("--hold-share", type=float, default=0.8, help="share of the sustainable rate held")
    parser.add_argument("--feedback-share", type=float, default=0.5, help="share of answers that get feedback")
    parser.add_argument("--limit", type=int, default=2000, help="prompts sampled from the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 s steps and 90 s holds (about 5 minutes in all)")
    parser.set_defaults(run=run_bench_load)


def run_bench_load(args: argparse.Namespace) -> int:
    from training.benchmarks.load import LoadBenchConfig, quick, run_load_bench, summary_table

    for name in ("p99_ms", "start_rate", "step_s", "hold_s"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 < args.hold_share <= 1 or not 0 <= args.feedback_share <= 1:
        raise ValueError("--hold-share must be in (0, 1] and --feedback-share in [0, 1]")
    if args.max_rate < args.start_rate:
        raise ValueError(f"--max-rate ({args.max_rate}) is below --start-rate ({args.start_rate})")
    config = LoadBenchConfig(
        data=args.data,
        out=args.out,
        experts=args.experts,
        p99_ms=args.p99_ms,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        step_s=args.step_s,
        hold_s=args.hold_s,
        hold_share=args.hold_share,
        feedback_share=args.feedback_share,
        limit=args.limit,
        seed=args.seed,
    )
    results = run_load_bench(quick(config) if args.quick else config)
    print(summary_table(results))
    print(f"wrote {args.out}/results.json and {args.out}/load.png")
    return 0
