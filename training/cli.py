"""The `routerllm` command line.

A subcommand is one module of training/commands/ whose `add_command(subparsers)` adds its parser and sets `run` to a
function of the parsed namespace returning an exit code, plus one line in COMMANDS. torch and friends load inside `run`.

    routerllm train knn --data DIR --experts seed4 --out ckpt/knn [--k 80] [--holdout 0.3]
    routerllm rate moe --data DIR --config configs/cpu.yaml --out ckpt/moe-rated [--limit 200]
    routerllm bench --train DIR --experts mix4 --out runs/mix4 [--split 0.3 --seed 0] [--strategies dummy,knn]
    routerllm bench-online --data DIR --experts seed4 --out runs/online [--passes 3 --lam 0.1] [--through-serve]
    routerllm report --url http://127.0.0.1:8000 --out runs/report [--window-s 3600]
    routerllm bench-budget --train DIR --experts seed4 --carbon-budget-frac 0.4,0.2 --out runs/budget
    routerllm bench-load --data DIR --out runs/load [--quick] [--p99-ms 1000] [--hold-s 600]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from training.commands import bench, bench_budget, bench_load, bench_online, rate, report, train

# One line per subcommand (training/commands/<name>.py).
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    train.add_command,
    rate.add_command,
    bench.add_command,
    bench_online.add_command,
    report.add_command,
    bench_budget.add_command,
    bench_load.add_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routerllm", description="Train and benchmark RouterLLM routers.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `routerllm` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, KeyError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"routerllm {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
