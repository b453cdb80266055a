"""The `routerllm` command line.

A subcommand is one `add_<name>_command(subparsers)` function, which adds its parser and sets `run` to a function
of the parsed namespace returning an exit code, plus one line in COMMANDS. torch and friends load inside `run`.

    routerllm train knn --data DIR --experts seed4 --out ckpt/knn [--k 80] [--holdout 0.3]
    routerllm bench --train DIR --experts mix4 --out runs/mix4 [--split 0.3 --seed 0] [--strategies dummy,knn]
    routerllm bench-online --data DIR --experts seed4 --out runs/online [--passes 3 --lam 0.1] [--through-serve]
    routerllm bench-budget --train DIR --experts seed4 --carbon-budget-frac 0.4,0.2 --out runs/budget
    routerllm bench-load --data DIR --out runs/load [--quick] [--p99-ms 1000] [--hold-s 600]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from training.benchmarks.offline import DEFAULT_GRID, DEFAULT_STRATEGIES
from training.benchmarks.shift import SHIFT_TASK, ShiftPlan
from training.options import dotted_values, parse_dotted
from training.trainers import TRAINERS


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experts", default="seed4", help="preset (seed4, mix4) or comma list of model columns")
    parser.add_argument(
        "--embedder", default=None, help="sentence encoder of the cached prompt embeddings (default: MiniLM)"
    )


# --- train ----------------------------------------------------------------------------------------------
def add_train_command(subparsers: argparse._SubParsersAction) -> None:
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
    _add_data_options(parser)
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


# --- bench ----------------------------------------------------------------------------------------------
def add_bench_command(subparsers: argparse._SubParsersAction) -> None:
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
    _add_data_options(parser)
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from training.benchmarks.offline import BenchConfig
    from training.benchmarks.offline import run_bench as bench
    from training.benchmarks.tables import bench_table

    strategies = None if args.strategies is None else _names(args.strategies)
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


# --- bench-online ---------------------------------------------------------------------------------------
def add_bench_online_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench-online",
        help="replay a stream of prompts through the online learners, VW and references (learning while serving)",
        description="Writes <out>/results.json and <out>/learning_curve.png and prints a table "
        "(see training/benchmarks/online.py).",
    )
    parser.add_argument("--data", required=True, help="RouterBench CSV or directory")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--passes", type=int, default=None, help="shuffled passes over the training part (default 3; 1 with --shift)"
    )
    parser.add_argument("--lam", type=float, default=0.1, help="cost weight of the reward (score - lam * cost)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the stream order and the learners")
    parser.add_argument("--holdout", type=float, default=0.3, help="fraction held out to evaluate final policies")
    parser.add_argument("--limit", type=int, default=None, help="at most N prompts (quick runs)")
    parser.add_argument("--strategies", default="rl,moe", help="online learners to run (comma list)")
    parser.add_argument("--starts", default="cold,warm", help="cold and/or warm (from an offline fit)")
    parser.add_argument("--warm-dir", default=None, help="<dir>/<strategy> checkpoints to warm-start from")
    parser.add_argument("--vw", action=argparse.BooleanOptionalAction, default=True, help="run Vowpal Wabbit")
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
        "--trainer",
        dest="trainer_options",
        action="append",
        default=[],
        metavar="STRATEGY.OPTION=VALUE",
        help="an offline trainer option of the warm-start fits, e.g. --trainer rl.total_steps=5000",
    )
    _add_data_options(parser)
    parser.set_defaults(run=run_bench_online)


def run_bench_online(args: argparse.Namespace) -> int:
    """Replay the stream in process, or with --through-serve with the served learners (over_http) in place of the
    in-process ones."""
    from training.benchmarks.online import OnlineBenchConfig, run_online_bench
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
        holdout=args.holdout,
        limit=args.limit,
        strategies=_names(args.strategies),
        starts=_names(args.starts),
        vw=args.vw,
        window=args.window,
        warm_dir=args.warm_dir,
        learner=dotted_values([f"learner.{p}" for p in args.learner], "--learner").get("learner", {}),
        strategy_config=dotted_values(args.set_options, "--set"),
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


# --- bench-budget ---------------------------------------------------------------------------------------
def add_bench_budget_command(subparsers: argparse._SubParsersAction) -> None:
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
    _add_data_options(parser)
    parser.set_defaults(run=run_bench_budget)


def run_bench_budget(args: argparse.Namespace) -> int:
    from training.benchmarks.budget import BudgetBenchConfig, run_budget_bench
    from training.benchmarks.budget_report import budget_table

    try:
        fracs = [float(f) for f in _names(args.carbon_budget_frac)]
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
        policies=_names(args.policies),
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


# --- bench-load -----------------------------------------------------------------------------------------
def add_bench_load_command(subparsers: argparse._SubParsersAction) -> None:
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


def _names(text: str) -> list[str]:
    """A comma list: "rl, moe" -> ["rl", "moe"]."""
    return [s.strip() for s in text.split(",") if s.strip()]


# One line per subcommand.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_train_command,
    add_bench_command,
    add_bench_online_command,
    add_bench_budget_command,
    add_bench_load_command,
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
