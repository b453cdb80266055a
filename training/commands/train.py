"""`routerllm train STRATEGY`: fit one strategy on outcome tables and save its checkpoint."""

from __future__ import annotations

import argparse

from training.commands.common import add_data_options
from training.trainers import TRAINERS


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train one strategy on RouterBench outcomes and save its checkpoint",
        description="routerllm train STRATEGY --help lists that strategy's own options.",
    )
    parser.add_argument("strategy", choices=sorted(TRAINERS), help="strategy to train")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="--data, --out, ... and the strategy's options")
    parser.set_defaults(run=run_train)


def train_parser(strategy: str) -> tuple[argparse.ArgumentParser, set[str]]:
    """The parser of `routerllm train <strategy>`, and the destinations that are not the trainer's options.

    The shared options have names no trainer should use (trainers own --seed, --encoder, ...)."""
    from training.trainers import trainer_module

    module = trainer_module(strategy)
    if module is None:
        raise SystemExit(f"routerllm train: the trainer of {strategy!r} ({TRAINERS[strategy]}) does not exist yet")
    parser = argparse.ArgumentParser(prog=f"routerllm train {strategy}")
    parser.add_argument("--data", required=True, help="RouterBench CSV or directory to train on")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument(
        "--holdout", type=float, default=0.0, help="hold out this fraction (by task) to measure before saving"
    )
    parser.add_argument("--holdout-seed", type=int, default=0, help="seed of the held-out split")
    add_data_options(parser)
    common = {action.dest for action in parser._actions}
    try:
        module.add_arguments(parser.add_argument_group(f"{strategy} options"))
    except argparse.ArgumentError as e:
        raise SystemExit(f"routerllm train {strategy}: the trainer's options clash with the shared ones: {e}") from e
    return parser, common


def run_train(args: argparse.Namespace) -> int:
    from training.benchmarks.offline import train_and_save

    parser, common = train_parser(args.strategy)
    ns = parser.parse_args(args.args)
    options = {k: v for k, v in vars(ns).items() if k not in common}
    fitted = train_and_save(
        args.strategy,
        ns.data,
        ns.out,
        ns.experts,
        options,
        holdout=ns.holdout,
        holdout_seed=ns.holdout_seed,
        embedder=ns.embedder,
    )
    summary = {k: v for k, v in fitted.get("held_out", {}).items() if k in ("n", "quality", "cost_per_1k", "aiq")}
    print(f"saved {args.strategy} checkpoint to {ns.out} (n_train={fitted['n_train']}) {summary or ''}")
    return 0
