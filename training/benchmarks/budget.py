"""Offline carbon-budget benchmark on RouterBench outcomes (`routerllm bench-budget`).

Trains every budget-aware policy on the training part (budget_policies.py), then replays the evaluation prompts
as one shuffled stream cut into windows of `window` requests, each with a carbon budget of F x the carbon that
always routing to the largest expert spends on that window, for every F of `budget_fracs`, through every policy
and the serving budget guard (budget_replay.py). Writes results.json:

    always_largest: {expert, quality, carbon_g, cost_usd}
    runs: [{budget_frac, policy, quality, carbon_g, carbon_frac, windows_over_budget_frac, max_overrun_frac,
            cost_usd, n_windows, guard_overrides_frac, params, fit_s}, ...]

carbon_frac is a share of always-largest's carbon on the same stream, max_overrun_frac a share of the window's
budget. And budget_quality_carbon.png: quality against carbon per policy.

The carbon of a call is the catalog's estimate for a typical request (experts/catalog.carbon_g: energy per token
x 400 tokens x grid intensity), whose energy per token training/data/routerbench.py makes proportional to the
model's parameter count (0.05 J per token per billion parameters). RouterBench records no energy, so that is the
energy model: a call's carbon depends on the expert, not on the prompt. The data preparation is the one `bench`
and `bench-online` share (training/data/prepared.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from router_deployments.objectives import TYPICAL_TOKENS_IN, TYPICAL_TOKENS_OUT
from router_deployments.strategies.budget_pacing import PREDICTORS
from training.benchmarks.budget_policies import POLICIES, PolicyFactory
from training.benchmarks.budget_replay import cut_windows, replay_windows, run_metrics
from training.benchmarks.budget_report import plot_budget_runs
from training.data import prepared

DEFAULT_FRACS = (0.4, 0.2)
DEFAULT_WINDOW = 50


@dataclass
class BudgetBenchConfig:
    """What `routerllm bench-budget` runs; each field is a command-line option."""

    train: str
    """RouterBench CSV or directory to train on."""
    out: str
    """Directory for results.json and budget_quality_carbon.png."""
    experts: str = "seed4"
    eval: str | None = None
    """CSV or directory to evaluate on; None holds out `split` of `train` (stratified by task)."""
    budget_fracs: list[float] = field(default_factory=lambda: list(DEFAULT_FRACS))
    window: int = DEFAULT_WINDOW
    """Requests per budget window."""
    split: float = 0.3
    seed: int = 0
    """Seeds the held-out split, the stream order, the tuning windows and the trainers."""
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    limit: int | None = None
    options: dict[str, list[str]] = field(default_factory=dict)
    """Trainer options of rl (rl_bn shares them) and moe, e.g. {"rl": ["--total_steps", "5000"]}."""
    guard: bool = True
    """Send every choice through the budget guard (off: the policies' own budget awareness alone)."""
    predictor: str = "moe"
    """Quality predictor of the two baselines: the trained moe gate or the kNN index."""
    embedder: str | None = None
    progress: bool = True

    def check(self) -> None:
        """Clear errors for settings that cannot run."""
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise ValueError(f"Invalid policies {unknown or self.policies}. Available policies are {list(POLICIES)}")
        bad = [f for f in self.budget_fracs if not 0 < f <= 1]
        if bad or not self.budget_fracs:
            raise ValueError(f"budget fractions must be in (0, 1], got {bad or self.budget_fracs}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"Invalid predictor {self.predictor!r}. Available predictors are {list(PREDICTORS)}")
        if self.window < 1:
            raise ValueError(f"--window must be at least 1 request, got {self.window}")
        stray = set(self.options) - {"rl", "moe"}
        if stray:
            raise ValueError(f"--set takes rl.OPTION or moe.OPTION (trainer options), got {sorted(stray)}")


def call_carbon_g(catalog) -> np.ndarray:
    """[n_experts] estimated gCO2eq of a typical call to each expert (the module docstring)."""
    return np.array([catalog.carbon_g(n, TYPICAL_TOKENS_IN, TYPICAL_TOKENS_OUT) for n in catalog.names])


def run_budget_bench(config: BudgetBenchConfig) -> dict[str, Any]:
    """Train, tune, replay and compare; writes results.json and budget_quality_carbon.png under config.out."""
    config.check()
    data = prepared.prepare(
        config.train,
        config.experts,
        held_out=config.eval,
        split=config.split,
        limit=config.limit,
        seed=config.seed,
        embedder=config.embedder,
    )
    catalog, held_out = data.catalog, data.held_out
    carbon = call_carbon_g(catalog)
    largest = int(np.argmax([e.params_b for e in catalog.experts]))
    stream = np.random.default_rng(config.seed).permutation(len(held_out))
    windows = cut_windows(stream, config.window)
    factory = PolicyFactory(
        data, config.window, carbon, config.seed, config.options, progress=config.progress, predictor=config.predictor
    )
    results: dict[str, Any] = {
        "config": asdict(config),
        "n_train": len(data.train),
        "n_eval": len(held_out),
        "experts": catalog.names,
        "models": data.train.models,
        "call_carbon_g": dict(zip(catalog.names, carbon.tolist())),
        "energy_model": "carbon per call proportional to parameter count (catalog carbon_g of a typical call)",
        "always_largest": {
            "expert": catalog.names[largest],
            "quality": float(held_out.scores[:, largest].mean()),
            "carbon_g": float(carbon[largest] * len(held_out)),
            "cost_usd": float(held_out.costs[:, largest].sum()),
        },
        "single_experts": {
            name: {"quality": float(held_out.scores[:, j].mean()), "carbon_frac": float(carbon[j] / carbon[largest])}
            for j, name in enumerate(catalog.names)
        },
        "runs": [],
    }
    runs = [(frac, name) for frac in config.budget_fracs for name in config.policies]
    for frac, name in tqdm(runs, desc="bench-budget", unit="run", disable=not config.progress):
        policy = factory.build(name, frac)
        replay = replay_windows(
            policy.strategy,
            windows,
            held_out.prompts,
            data.held_out_embeddings,
            carbon,
            frac,
            weights=policy.weights,
            guard=config.guard,
        )
        metrics = run_metrics(replay, stream, held_out.scores, held_out.costs, carbon, largest)
        results["runs"].append(
            {"budget_frac": frac, "policy": name, **metrics, "params": policy.params, "fit_s": policy.fit_s}
        )
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_budget_runs(results, out / "budget_quality_carbon.png")
    return results
