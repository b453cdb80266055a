"""Offline benchmark on RouterBench outcomes: train routers, trace their cost-quality curves, compare.

Every router is scored on the held-out prompts by what its chosen expert really scored and cost there. Its curve
comes from sweeping the cost weight (ObjectiveWeights(quality=1, cost=lam) for lam in cost_weights()); strategies
that fan out to several experts are scored on their top-1 choice (`decision.expert`). The random baseline
(`dummy`) ignores weights, so it is one point: a sweep would only sample noise and its hull would flatter it.
References: `knn` (RouterBench's kNN router), `task` (knows each prompt's task and every expert's mean outcome on
it: where routing by task alone gets) and `oracle` (knows the true outcomes: the ceiling).

Trainers plug in through TRAINERS (see training/trainers/train_knn.py for the contract):
`fit_from_table(table, embeddings, catalog, **options)`, options built from the module's `add_arguments` defaults, overridden by `--set name.opt=v`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from tqdm import tqdm

from experts.catalog import ExpertCatalog
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import (
    OFFLINE_ONLY,
    STRATEGIES,
    RouteContext,
    RoutingStrategy,
    get_strategy_class,
)
from router_deployments.strategies.oracle import OracleStrategy
from router_deployments.strategies.task import TaskStrategy
from training import cost_quality
from training.data.routerbench import OutcomeTable, catalog_from_table, load_routerbench, resolve_experts

TRAINERS: dict[str, str] = {
    "knn": "training.trainers.train_knn",
    "bert": "training.trainers.train_bert",
    "moe": "training.trainers.train_moe",
    "rl": "training.trainers.train_rl",
}
REFERENCES = ("knn", "task", "oracle")
RANDOM = "dummy"
DEFAULT_STRATEGIES = (RANDOM, *TRAINERS)
# Cost penalties are scaled to [0, 1] and qualities differ by ~1/k, so cost weights 1e-3..100 span "ignore cost"
# to "always the cheapest". 24 log-spaced weights give the same AIQ as 40 to within 0.001 (kNN, seed4 and mix4).
COST_WEIGHT_RANGE = (1e-3, 100.0)
DEFAULT_GRID = 24
BUDGET_FRACTIONS = (0.25, 0.5)
LATENCY_PROMPTS = 200


def cost_weights(grid: int = DEFAULT_GRID) -> list[float]:
    """0 (the default weights), then `grid` log-spaced cost weights."""
    return [0.0, *np.geomspace(*COST_WEIGHT_RANGE, grid).tolist()]


# --- trainers -------------------------------------------------------------------------------------------
def trainer_module(name: str) -> ModuleType | None:
    """The trainer module of strategy `name`, or None when that module does not exist (yet)."""
    if name not in TRAINERS:
        raise KeyError(f"Invalid trainer {name!r}. Available trainers are {sorted(TRAINERS)}")
    if importlib.util.find_spec(TRAINERS[name]) is None:
        return None
    return importlib.import_module(TRAINERS[name])


def trainer_options(module: ModuleType, overrides: list[str] | None = None) -> dict[str, Any]:
    """A trainer's options: its argparse defaults, with `--opt value` style overrides parsed by its own parser."""
    parser = argparse.ArgumentParser(prog=module.__name__, add_help=False, exit_on_error=False)
    module.add_arguments(parser)
    try:
        options, unknown = parser.parse_known_args(overrides or [])
    except argparse.ArgumentError as e:
        raise ValueError(f"{module.__name__}: {e}") from e
    if unknown:
        known = sorted(o for a in parser._actions for o in a.option_strings)
        raise ValueError(f"{module.__name__} has no option {unknown}. Its options are {known}")
    return vars(options)


def parse_set_options(pairs: list[str]) -> dict[str, list[str]]:
    """`knn.k=20` -> {"knn": ["--k", "20"]}; option names use dashes or underscores as the trainer defines."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot and name and option):
            raise ValueError(f"Invalid --set {pair!r}: expected STRATEGY.OPTION=VALUE, e.g. knn.k=20")
        out.setdefault(name, []).extend([f"--{option}", value])
    return out


# --- data -----------------------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    """What `routerllm bench` runs; each field is a command-line option."""

    train: str
    """RouterBench CSV or directory to train on."""
    out: str
    """Directory for results.json and cost_quality.png."""
    experts: str = "seed4"
    """Preset name or comma list of model columns."""
    eval: str | None = None
    """CSV or directory to evaluate on; None holds out `split` of `train` (stratified by task)."""
    split: float = 0.3
    seed: int = 0
    strategies: list[str] | None = None
    """Strategies to train and evaluate; None = every known one, skipping trainers not written yet."""
    limit: int | None = None
    """Use at most this many prompts of each loaded table (a stratified sample), for quick runs."""
    options: dict[str, list[str]] = field(default_factory=dict)
    """Per-strategy trainer arguments, e.g. {"knn": ["--k", "20"]}."""
    embedder: str | None = None
    """Sentence encoder of the cached prompt embeddings (None: the default MiniLM)."""
    save_checkpoints: bool = False
    """Also save each trained strategy under <out>/checkpoints/<name>."""
    grid: int = DEFAULT_GRID
    """Cost weights swept per router (besides 0); each is one pass over the evaluation prompts."""


@dataclass
class BenchData:
    train: OutcomeTable
    eval: OutcomeTable
    train_embeddings: np.ndarray
    eval_embeddings: np.ndarray
    catalog: ExpertCatalog


def _sample(table: OutcomeTable, limit: int | None, seed: int) -> OutcomeTable:
    if limit is None or limit >= len(table):
        return table
    return table.split(test_fraction=limit / len(table), seed=seed)[1]


def embed(texts: list[str], embedder: str | None = None) -> np.ndarray:
    """Unit embeddings of `texts` through the on-disk cache."""
    from training.data.embedding_cache import embed_texts

    return embed_texts(texts) if embedder is None else embed_texts(texts, model=embedder)


def load_tables(config: BenchConfig) -> tuple[OutcomeTable, OutcomeTable]:
    models = resolve_experts(config.experts)
    train = _sample(load_routerbench(config.train, models), config.limit, config.seed)
    if config.eval is not None:
        return train, _sample(load_routerbench(config.eval, models), config.limit, config.seed)
    if not 0 < config.split < 1:
        raise ValueError(f"--split must be in (0, 1) when --eval is not given, got {config.split}")
    return train.split(test_fraction=config.split, seed=config.seed)


def prepare(config: BenchConfig) -> BenchData:
    train, held_out = load_tables(config)
    return BenchData(
        train=train,
        eval=held_out,
        train_embeddings=embed(train.prompts, config.embedder),
        eval_embeddings=embed(held_out.prompts, config.embedder),
        catalog=catalog_from_table(train, data=config.train),
    )


# --- routers --------------------------------------------------------------------------------------------
def check_strategy_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in STRATEGIES and n not in TRAINERS]
    if unknown:
        raise ValueError(f"Invalid strategies {unknown}. Available strategies are {sorted({*STRATEGIES, *TRAINERS})}")


def strategy_config(options: list[str] | None) -> dict[str, Any]:
    """`--set` for a strategy without a trainer sets fields of its config, e.g. complexity.model=./my-classifier.

    Values are read as JSON where they parse (numbers, booleans, objects), else as plain strings; the strategy's
    config schema validates them.
    """
    config: dict[str, Any] = {}
    for flag, value in zip(options[::2], options[1::2]) if options else ():
        try:
            config[flag.lstrip("-").replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            config[flag.lstrip("-").replace("-", "_")] = value
    return config


def build_router(name: str, data: BenchData, options: list[str] | None = None) -> RoutingStrategy:
    """Train (TRAINERS) or build (other registered strategies, configured by `options`) one router."""
    if name in OFFLINE_ONLY and options:
        raise ValueError(f"the {name} reference takes no options (got {options})")
    if name == "oracle":
        return OracleStrategy(data.catalog).set_outcomes(data.eval.prompts, data.eval.scores, data.eval.costs)
    if name == "task":
        task = TaskStrategy(data.catalog).fit(data.train.tasks, data.train.scores, data.train.costs)
        return task.set_prompt_tasks(data.eval.prompts, data.eval.tasks)
    if name in TRAINERS:
        module = trainer_module(name)
        if module is None:
            raise ModuleNotFoundError(f"the trainer of {name!r} ({TRAINERS[name]}) does not exist yet")
        kwargs = trainer_options(module, options)
        return module.fit_from_table(data.train, data.train_embeddings, data.catalog, **kwargs)
    cls = get_strategy_class(name)
    config = cls.Config(**strategy_config(options))  # checked before any model loads
    strategy = cls(data.catalog, config)
    strategy.setup()
    return strategy


def route_choices(
    strategy: RoutingStrategy, texts: list[str], embeddings: np.ndarray, weights: ObjectiveWeights
) -> np.ndarray:
    """Index of the (top-1) expert chosen for each prompt."""
    index = {n: i for i, n in enumerate(strategy.catalog.names)}
    choices = np.empty(len(texts), dtype=int)
    for start in range(0, len(texts), 256):
        contexts = [
            RouteContext(text=t, embedding=e, weights=weights)
            for t, e in zip(texts[start : start + 256], embeddings[start : start + 256])
        ]
        choices[start : start + len(contexts)] = [index[d.expert] for d in strategy.route_batch(contexts)]
    return choices


def routing_latency_ms(strategy: RoutingStrategy, texts: list[str], embeddings: np.ndarray) -> dict[str, float]:
    """Time route_batch on one prompt at a time (embedding excluded), over the first LATENCY_PROMPTS prompts."""
    n = min(len(texts), LATENCY_PROMPTS)
    strategy.route_batch([RouteContext(text=texts[0], embedding=embeddings[0])])  # warm-up
    times = []
    for text, emb in zip(texts[:n], embeddings[:n]):
        started = time.perf_counter()
        strategy.route_batch([RouteContext(text=text, embedding=emb)])
        times.append((time.perf_counter() - started) * 1000.0)
    return {"mean": float(np.mean(times)), "p50": float(np.median(times))}


def evaluate_point(strategy: RoutingStrategy, data: BenchData, cost_weight: float) -> tuple[np.ndarray, dict]:
    """Route every evaluation prompt at one cost weight; the choices and the resulting operating point."""
    weights = ObjectiveWeights(quality=1.0, cost=cost_weight)
    chosen = route_choices(strategy, data.eval.prompts, data.eval_embeddings, weights)
    rows = np.arange(len(data.eval))
    cost, quality = cost_quality.curve_point(data.eval.costs[rows, chosen], data.eval.scores[rows, chosen])
    return chosen, {"cost_weight": cost_weight, "cost_per_1k": cost, "quality": quality}


def evaluate_router(strategy: RoutingStrategy, data: BenchData, grid: int = DEFAULT_GRID) -> dict[str, Any]:
    """Curve over the cost-weight grid (grid=0: default weights only), the default point with expert shares and
    per-task quality, and routing latency."""
    chosen, default = evaluate_point(strategy, data, 0.0)
    curve = [default] + [evaluate_point(strategy, data, lam)[1] for lam in cost_weights(grid)[1:] if grid > 0]
    tasks, quality = np.array(data.eval.tasks), data.eval.scores[np.arange(len(data.eval)), chosen]
    return {
        "default": {
            "cost_per_1k": default["cost_per_1k"],
            "quality": default["quality"],
            "shares": cost_quality.expert_shares(chosen, data.catalog.names),
            "per_task_quality": {t: float(quality[tasks == t].mean()) for t in sorted(set(data.eval.tasks))},
        },
        "curve": curve,
        "latency_ms": routing_latency_ms(strategy, data.eval.prompts, data.eval_embeddings),
    }


def single_experts(data: BenchData) -> dict[str, dict[str, float]]:
    """Each expert alone on the evaluation prompts."""
    return {
        name: dict(
            zip(("cost_per_1k", "quality"), cost_quality.curve_point(data.eval.costs[:, j], data.eval.scores[:, j]))
        )
        for j, name in enumerate(data.catalog.names)
    }


def summarise(results: dict[str, Any]) -> None:
    """Add AIQ, best quality within budgets and the cost to match the best expert, all on the shared cost axis."""
    experts = results["single_experts"]
    priciest = max(experts, key=lambda n: experts[n]["cost_per_1k"])
    best = max(experts, key=lambda n: (experts[n]["quality"], -experts[n]["cost_per_1k"]))
    top_cost, best_q, best_cost = (
        experts[priciest]["cost_per_1k"],
        experts[best]["quality"],
        experts[best]["cost_per_1k"],
    )
    curves = {n: [(p["cost_per_1k"], p["quality"]) for p in r["curve"]] for n, r in results["routers"].items()}
    curves.update({n: [(e["cost_per_1k"], e["quality"])] for n, e in experts.items()})
    c_max = max(c for points in curves.values() for c, _ in points)
    results.update(
        c_max_per_1k=c_max,
        priciest_expert={"name": priciest, "cost_per_1k": top_cost},
        best_expert={"name": best, "quality": best_q, "cost_per_1k": best_cost},
    )
    for name, entry in [*results["routers"].items(), *experts.items()]:
        points = curves[name]
        entry["aiq"] = cost_quality.aiq(points, c_max)
        entry["hull"] = cost_quality.quality_hull(points).tolist()
        for fraction in BUDGET_FRACTIONS:
            entry[f"best_quality_at_{int(fraction * 100)}pct"] = cost_quality.best_quality_within(
                points, fraction * top_cost
            )
        reach = cost_quality.cost_to_reach(points, best_q)
        entry["cost_fraction_to_match_best_expert"] = None if reach is None else reach / best_cost


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Train, evaluate and compare; writes results.json and cost_quality.png under config.out."""
    requested = list(config.strategies) if config.strategies is not None else list(DEFAULT_STRATEGIES)
    names = list(dict.fromkeys([*requested, *REFERENCES, RANDOM]))
    check_strategy_names(names)
    explicit = set(config.strategies or ()) | set(REFERENCES)
    for name in [n for n in names if n in TRAINERS and trainer_module(n) is None]:
        if name in explicit:
            raise ModuleNotFoundError(f"the trainer of {name!r} ({TRAINERS[name]}) does not exist yet")
        tqdm.write(f"skipping {name!r}: its trainer {TRAINERS[name]} does not exist yet")
        names.remove(name)
    unknown_options = set(config.options) - set(names)
    if unknown_options:
        raise ValueError(f"--set names strategies {sorted(unknown_options)} that are not benchmarked ({names})")

    data = prepare(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "config": asdict(config),
        "n_train": len(data.train),
        "n_eval": len(data.eval),
        "experts": data.catalog.names,
        "models": data.train.models,
        "cost_weights": cost_weights(config.grid),
        "single_experts": single_experts(data),
        "routers": {},
    }
    for name in tqdm(names, desc="routers", unit="router"):
        started = time.perf_counter()
        router = build_router(name, data, config.options.get(name))
        fit_s = time.perf_counter() - started
        if config.save_checkpoints and name in TRAINERS:
            router.save(out / "checkpoints" / name, metrics={"n_train": len(data.train)})
        entry = evaluate_router(router, data, grid=0 if name == RANDOM else config.grid)
        entry.update(kind="reference" if name in REFERENCES else "random" if name == RANDOM else "strategy")
        entry["fit_s"] = fit_s
        results["routers"][name] = entry
    summarise(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_curves(results, out / "cost_quality.png")
    return results


def train_and_save(
    name: str,
    data: str,
    out: str,
    experts: str = "seed4",
    options: dict[str, Any] | None = None,
    holdout: float = 0.0,
    holdout_seed: int = 0,
    embedder: str | None = None,
) -> dict[str, Any]:
    """Train one strategy through its trainer and save its checkpoint; with holdout > 0, measure it on that
    fraction of held-out prompts (the checkpoint is then trained on the rest). Returns the metrics saved with it."""
    module = trainer_module(name)
    if module is None:
        raise ModuleNotFoundError(f"the trainer of {name!r} ({TRAINERS[name]}) does not exist yet")
    options = options or {}
    table = load_routerbench(data, resolve_experts(experts))
    train, held_out = table.split(holdout, holdout_seed) if holdout > 0 else (table, None)
    catalog = catalog_from_table(train, data=data)
    train_embeddings = embed(train.prompts, embedder)
    started = time.perf_counter()
    strategy = module.fit_from_table(train, train_embeddings, catalog, **options)
    fitted = {"data": data, "experts": train.models, "n_train": len(train), "options": options}
    fitted["fit_s"] = time.perf_counter() - started
    if held_out is not None:
        bench = BenchData(train, held_out, train_embeddings, embed(held_out.prompts, embedder), catalog)
        entry = evaluate_router(strategy, bench)
        points = [(p["cost_per_1k"], p["quality"]) for p in entry["curve"]]
        singles = single_experts(bench)
        c_max = max([c for c, _ in points] + [e["cost_per_1k"] for e in singles.values()])
        fitted["held_out"] = {
            "n": len(held_out),
            "fraction": holdout,
            "seed": holdout_seed,
            "quality": entry["default"]["quality"],
            "cost_per_1k": entry["default"]["cost_per_1k"],
            "shares": entry["default"]["shares"],
            "aiq": cost_quality.aiq(points, c_max),
        }
    strategy.save(out, metrics=fitted)
    return fitted


# --- report ---------------------------------------------------------------------------------------------
def _densify(hull: np.ndarray, per_segment: int = 30) -> np.ndarray:
    """Points along straight hull segments, so they stay straight (in linear cost) on a log-cost plot."""
    if len(hull) < 2:
        return hull
    parts = [np.linspace(a, b, per_segment, endpoint=False) for a, b in zip(hull[:-1], hull[1:])]
    return np.vstack([*parts, hull[-1:]])


def plot_curves(results: dict[str, Any], path: str | Path) -> None:
    """One hull line (and its sweep points) per router, single experts as labelled points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, entry in results["routers"].items():
        hull = np.asarray(entry["hull"])
        line = _densify(np.vstack([hull, [results["c_max_per_1k"], hull[-1, 1]]]))
        (drawn,) = ax.plot(line[:, 0], line[:, 1], label=f"{name} (AIQ {entry['aiq']:.3f})")
        points = np.array([[p["cost_per_1k"], p["quality"]] for p in entry["curve"]])
        ax.scatter(points[:, 0], points[:, 1], s=10, color=drawn.get_color(), alpha=0.5)
    for name, e in results["single_experts"].items():
        ax.scatter(e["cost_per_1k"], e["quality"], marker="*", s=120, color="black", zorder=3)
        ax.annotate(name, (e["cost_per_1k"], e["quality"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("cost per 1,000 requests (USD, log scale)")
    ax.set_ylabel("mean quality (recorded score)")
    ax.set_title(f"{', '.join(results['experts'])}: {results['n_eval']} held-out prompts", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(results: dict[str, Any]) -> str:
    """A compact text table of every router and single expert."""

    def fmt(x: float | None, spec: str = ".3f") -> str:
        return "-" if x is None else format(x, spec)

    header = f"{'router':<24}{'quality':>8}{'$/1k':>8}{'AIQ':>7}{'q@25%':>7}{'q@50%':>7}{'match':>7}{'ms p50':>8}"
    lines = [header, "-" * len(header)]
    rows = [(n, r, r["default"]) for n, r in results["routers"].items()]
    rows += [(n, e, e) for n, e in results["single_experts"].items()]
    for name, entry, point in rows:
        latency = entry.get("latency_ms", {}).get("p50")
        lines.append(
            f"{name[:23]:<24}{point['quality']:>8.3f}{point['cost_per_1k']:>8.3f}{entry['aiq']:>7.3f}"
            f"{fmt(entry['best_quality_at_25pct']):>7}{fmt(entry['best_quality_at_50pct']):>7}"
            f"{fmt(entry['cost_fraction_to_match_best_expert'], '.0%'):>7}{fmt(latency, '.2f'):>8}"
        )
    top, best = results["priciest_expert"], results["best_expert"]
    lines.append(
        f"quality/$ at default weights; q@25%/q@50%: best quality at <= 25%/50% of {top['name']}'s cost "
        f"(${top['cost_per_1k']:.3f}/1k); match: cost to reach {best['name']}'s quality "
        f"({best['quality']:.3f}) as a share of its cost"
    )
    return "\n".join(lines)
