"""Offline benchmark on RouterBench outcomes: train routers, trace their cost-quality curves, compare.

Every router is scored on the held-out prompts by what its chosen expert really scored and cost there. Its curve
comes from sweeping the cost weight (ObjectiveWeights(quality=1, cost=lam) for lam in cost_weights()); strategies
that fan out to several experts are scored on their top-1 choice (`decision.expert`). The random baseline
(`dummy`) ignores weights, so it is one point: a sweep would only sample noise and its hull would flatter it.
References: `knn` (RouterBench's kNN router), `task` (knows each prompt's task and every expert's mean outcome on
it: where routing by task alone gets) and `oracle` (knows the true outcomes: the ceiling).

Strategies with a trainer (training/trainers/__init__.py, TRAINERS) are fitted with
`fit_from_table(table, embeddings, catalog, **options)`, options built from the module's `add_arguments`
defaults, overridden by `--set name.opt=v`; other registered strategies are built from their config, `--set`
setting its fields. The data comes from training/data/prepared.py, the plot from plots.py, the text table from
tables.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

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
from training.benchmarks.plots import plot_cost_quality
from training.data import prepared
from training.data.prepared import PreparedData
from training.data.routerbench import catalog_from_table, load_routerbench, resolve_experts
from training.options import flag_values
from training.trainers import TRAINERS, require_trainer, trainer_module, trainer_options

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


# --- config -----------------------------------------------------------------------------------------------
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


# --- routers --------------------------------------------------------------------------------------------
def check_strategy_names(names: list[str]) -> None:
    unknown = [n for n in names if n not in STRATEGIES and n not in TRAINERS]
    if unknown:
        raise ValueError(f"Invalid strategies {unknown}. Available strategies are {sorted({*STRATEGIES, *TRAINERS})}")


def build_router(name: str, data: PreparedData, options: list[str] | None = None) -> RoutingStrategy:
    """Train (TRAINERS) or build (other registered strategies, configured by `options`) one router.

    `options` are flags (`--set` as training.options.parse_dotted gives them): a trainer's own parser reads them,
    or they set fields of the strategy's config (flag_values), which its schema validates."""
    if name in OFFLINE_ONLY and options:
        raise ValueError(f"the {name} reference takes no options (got {options})")
    if name == "oracle":
        return OracleStrategy(data.catalog).set_outcomes(
            data.held_out.prompts, data.held_out.scores, data.held_out.costs
        )
    if name == "task":
        task = TaskStrategy(data.catalog).fit(data.train.tasks, data.train.scores, data.train.costs)
        return task.set_prompt_tasks(data.held_out.prompts, data.held_out.tasks)
    if name in TRAINERS:
        module = require_trainer(name)
        kwargs = trainer_options(module, options)
        return module.fit_from_table(data.train, data.train_embeddings, data.catalog, **kwargs)
    cls = get_strategy_class(name)
    config = cls.Config(**flag_values(options or []))  # checked before any model loads
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


def evaluate_point(strategy: RoutingStrategy, data: PreparedData, cost_weight: float) -> tuple[np.ndarray, dict]:
    """Route every evaluation prompt at one cost weight; the choices and the resulting operating point."""
    weights = ObjectiveWeights(quality=1.0, cost=cost_weight)
    chosen = route_choices(strategy, data.held_out.prompts, data.held_out_embeddings, weights)
    rows = np.arange(len(data.held_out))
    cost, quality = cost_quality.curve_point(data.held_out.costs[rows, chosen], data.held_out.scores[rows, chosen])
    return chosen, {"cost_weight": cost_weight, "cost_per_1k": cost, "quality": quality}


def evaluate_router(strategy: RoutingStrategy, data: PreparedData, grid: int = DEFAULT_GRID) -> dict[str, Any]:
    """Curve over the cost-weight grid (grid=0: default weights only), the default point with expert shares and
    per-task quality, and routing latency."""
    chosen, default = evaluate_point(strategy, data, 0.0)
    curve = [default] + [evaluate_point(strategy, data, lam)[1] for lam in cost_weights(grid)[1:] if grid > 0]
    tasks, quality = np.array(data.held_out.tasks), data.held_out.scores[np.arange(len(data.held_out)), chosen]
    return {
        "default": {
            "cost_per_1k": default["cost_per_1k"],
            "quality": default["quality"],
            "shares": cost_quality.expert_shares(chosen, data.catalog.names),
            "per_task_quality": {t: float(quality[tasks == t].mean()) for t in sorted(set(data.held_out.tasks))},
        },
        "curve": curve,
        "latency_ms": routing_latency_ms(strategy, data.held_out.prompts, data.held_out_embeddings),
    }


def single_experts(data: PreparedData) -> dict[str, dict[str, float]]:
    """Each expert alone on the evaluation prompts."""
    return {
        name: dict(
            zip(
                ("cost_per_1k", "quality"),
                cost_quality.curve_point(data.held_out.costs[:, j], data.held_out.scores[:, j]),
            )
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
            require_trainer(name)  # raises: a strategy asked for by name must run
        tqdm.write(f"skipping {name!r}: its trainer {TRAINERS[name]} does not exist yet")
        names.remove(name)
    unknown_options = set(config.options) - set(names)
    if unknown_options:
        raise ValueError(f"--set names strategies {sorted(unknown_options)} that are not benchmarked ({names})")

    data = prepared.prepare(
        config.train,
        config.experts,
        held_out=config.eval,
        split=config.split,
        limit=config.limit,
        seed=config.seed,
        embedder=config.embedder,
    )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "config": asdict(config),
        "n_train": len(data.train),
        "n_eval": len(data.held_out),
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
    plot_cost_quality(results, out / "cost_quality.png")
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
    module = require_trainer(name)
    options = options or {}
    table = load_routerbench(data, resolve_experts(experts))
    train, held_out = table.split(holdout, holdout_seed) if holdout > 0 else (table, None)
    catalog = catalog_from_table(train, data=data)
    train_embeddings = prepared.embed(train.prompts, embedder)
    started = time.perf_counter()
    strategy = module.fit_from_table(train, train_embeddings, catalog, **options)
    fitted = {"data": data, "experts": train.models, "n_train": len(train), "options": options}
    fitted["fit_s"] = time.perf_counter() - started
    if held_out is not None:
        bench = PreparedData(train, held_out, train_embeddings, prepared.embed(held_out.prompts, embedder), catalog)
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
