"""`routerllm rate STRATEGY`: seed a served learner's Bayesian head with a rating table (training/rating.py)."""

from __future__ import annotations

import argparse

SERVED = ("moe", "rl")  # the strategies with a Bayesian head


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rate",
        help="seed a served learner's head with a rating table (every expert's outcome per prompt)",
        description="Build STRATEGY as the serving config builds it, let its Bayesian head observe every expert's "
        "score and cost on every prompt of a RouterBench-style table, and save a checkpoint to name as "
        "router.strategies.STRATEGY.checkpoint in that config (the learner starts from it too). The table's "
        "columns are the experts' `trained_as` names. With --write-priors it also writes the table's mean score per "
        "expert into that config's quality_prior.",
    )
    parser.add_argument("strategy", choices=SERVED, help="strategy whose head to seed")
    parser.add_argument("--data", required=True, help="RouterBench CSV or directory of CSVs: the rating table")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--config", default="configs/cpu.yaml", help="the serving config the checkpoint is for")
    parser.add_argument("--limit", type=int, default=None, help="rate on at most this many prompts (by task)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    parser.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="CKPT",
        help="start from this checkpoint (an offline fit from `routerllm train STRATEGY`, a warm start): its network "
        "is kept and its head observes the table (the fit's own training table: what bench-online's warm starts do)",
    )
    parser.add_argument(
        "--write-priors",
        action="store_true",
        help="also set each expert's quality_prior in --config to the table's mean score (in place, comments kept): "
        "what every strategy and report reads as the expert's quality before any outcome",
    )
    parser.set_defaults(run=run_rate)


def run_rate(args: argparse.Namespace) -> int:
    from training.rating import rate, write_quality_priors

    try:
        summary = rate(
            args.strategy, args.data, args.out, args.config, limit=args.limit, seed=args.seed, start=args.start
        )
    except ValueError as e:
        raise SystemExit(f"routerllm rate: {e}") from e
    print(f"saved {args.strategy} checkpoint to {args.out}: its head observed {summary['n_prompts']} prompts")
    print(f"{'expert':<16} {'column':<36} {'rated quality':>13} {'catalog':>8} {'rated $/call':>13} {'catalog':>10}")
    for name, e in summary["experts"].items():
        print(
            f"{name:<16} {e['column']:<36} {e['rated_quality']:>13.3f} {e['catalog_quality']:>8.3f} "
            f"{e['rated_cost_usd']:>13.6f} {e['catalog_cost_usd']:>10.6f}"
        )
    if args.write_priors:
        priors = {name: e["rated_quality"] for name, e in summary["experts"].items()}
        try:
            changed = write_quality_priors(args.config, priors)
        except (ValueError, OSError) as e:
            raise SystemExit(f"routerllm rate: {e} (the checkpoint at {args.out} is saved)") from e
        moves = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changed.items())
        print(f"wrote quality_prior in {args.config}: {moves}")
    print(f"serve it: router.strategies.{args.strategy}.checkpoint: {args.out} (in {args.config})")
    if args.start and not summary["network_weight"]:
        print(
            f"  and network_weight: 0.5 there (bench-online's warm start): at {summary['network_weight']} the fit's "
            "network never routes, not even where the head has seen nothing"
        )
    return 0
