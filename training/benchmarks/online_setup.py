"""Set-up of the online benchmark (online.py): what it runs (OnlineBenchConfig, one field per `routerllm
bench-online` option), the settings it runs the learners with, and how each learner under test is built.

Settings: BENCH_LEARNER (the OnlineLearner's, on top of LearnerConfig's defaults), EXPLORATION (per start),
STRATEGY_CONFIG (per strategy) and START_CONFIG (per start); the comments beside them say what each was measured
against. A learner starts from an offline fit on the training part (warm), from a head that has observed the
set-aside rating table (cold, rating prior), or from the catalog's means alone (cold, no prior); build_learner wraps
it in an OnlineLearner over an in-memory store, exactly as the learner actor does in serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from router_deployments.strategies import RoutingStrategy, get_strategy_class
from router_deployments.strategies.outcome_head import observe_rated
from training.benchmarks.shift import ShiftPlan, old_task_rows
from training.benchmarks.stream import Stream
from training.data import prepared
from training.online.learner import LearnerConfig, OnlineLearner, StrategyTraining
from training.online.outcome_store import MEMORY
from training.trainers import require_trainer, trainer_options

# Learner settings of the benchmark: publish often (the stream is short) and keep few version directories.
BENCH_LEARNER: dict[str, Any] = {
    "batch_size": 64,
    "updates_per_step": 1,
    "min_experiences": 16,
    "publish_every_updates": 8,
    "publish_every_s": None,
    "holdback_size": 200,
    "keep_versions": 4,
    "feedback_ttl_s": None,
}
# Exploration (epsilon of uniform choice; both rl and moe explore). The head starts at the catalog's best expected
# utility and learns from the expert it calls as well, so little uniform exploration is needed: on one pass every
# explored request costs the gap to the best expert.
# Cold starts explore by Thompson sampling from the head's posterior instead (START_CONFIG: thompson_scale), which
# explores only where the posterior is unsure: no uniform epsilon.
EXPLORATION: dict[str, dict[str, float]] = {
    "cold": {"epsilon_start": 0.0, "epsilon_end": 0.0, "epsilon_decay_experiences": 1000},
    "warm": {"epsilon_start": 0.03, "epsilon_end": 0.005, "epsilon_decay_experiences": 1000},
}
# Strategy settings of the online learners (their own config fields), on top of each strategy's defaults: both route
# on the Bayesian head (outcome_head.py) blended with their network by network_weight. The gate learns online with a
# larger step than offline (mix4, lam 0.5, cold: 0.763 at 3e-3 vs 0.738 at 1e-3).
# A cold network is an untrained guess (network_weight 0: the head alone routes); an offline fit is worth half where
# the head has seen no outcomes, less where it has (blend "evidence", outcome_head.network_share): after a shift the
# head's evidence on the new task overrides the offline network's guess there (seed 0, warm, --shift, phase 2, with
# the learner's TD-prioritised replay: seed4 lam 0.1 rl 0.445 -> 0.483, moe 0.484 -> 0.482; mix4 lam 0.5 rl
# 0.548 -> 0.559, moe 0.554 -> 0.553).
# rl serves its target network, the Polyak average of the online one: online it follows at tau 0.05 instead of the
# offline 0.01, so a warm network that is wrong about new traffic is corrected within tens of updates, not hundreds
# (--shift, rl-warm's phase 2 summed over the four settings and both tuning seeds 3-4: +0.061; network_weight 0.25
# instead: +0.049). Cold starts do not route on the network (network_weight 0), so it moves them not at all.
HEAD: dict[str, Any] = {"head": {"features": 0, "ridge": 30.0, "blend": "evidence"}, "network_weight": 0.0}
STRATEGY_CONFIG: dict[str, dict[str, Any]] = {"rl": {**HEAD, "tau": 0.05}, "moe": {"learning_rate": 3e-3, **HEAD}}
# Cold starts: heads centred on the rating table's mean embedding, scaled by 1.6, and thompson_scale 0.1 (utility
# noise sd of the posterior draws per unit posterior sd). Chosen in scratch numpy replays of the head on data seeds
# 3-5 (8 sampling streams each: one stream moves the sum below by +-0.01), never on the seeds 0-2 the README reports
# nor on held-out prompts. Sum over the four settings (seed4/mix4, lam 0.1/0.5) of the stream average minus the best
# fixed expert: uncentred ridge 30 at scale 0.15 +0.014, at 0.1 +0.015; ridge 15 / 60 +0.017 / +0.007; centred x1.3
# +0.019; centred x1.6 at 0.1 +0.027, at 0.2 +0.012; PCA-whitened 16-64 dims -0.007 to -0.018.
# Since session 18 cold heads also learn per prompt type (outcome_head.py, `clusters`: k-means prototypes of the rating
# table, a one-hot offset per type with prior precision ridge / 5^2) and the embedding part keeps scale 1.0. Chosen in
# scratch numpy replays of the head on data seeds 3-9 (two draws each, 56 runs a variant), summed over the four
# settings as above: the head above +0.029; with 6 types at embedding scale 1.6 +0.037, 1.0 +0.039, 0.5 +0.039; type
# scale 3 / 10 +0.040 / +0.038; 4 types +0.047, 8 types +0.030; 3 types alone (no embedding part, greedy) +0.045.
# 4 types beat the head above on seed4 lam 0.1 in 7 of 7 data seeds, and on 6, 5 and 6 of 7 on the other settings.
# Warm starts keep the uncentred head (centring it on the training prompts lowered phase 2 of --shift, README).
# Their head observes every expert's outcome on the rows the offline fit trained on (OnlineBenchConfig.warm_head,
# warm_head_checkpoint: what `routerllm rate --from FIT` serves), and they explore by Thompson sampling at 0.1 on
# top of the small epsilon (EXPLORATION). Chosen on --shift over data seeds 3-4 with two draws each (16 runs a
# router): rl-warm's phase 2 +0.006 +- 0.004 a run (13 of 16 up), moe-warm +0.003 +- 0.004, against heads that
# start at the catalog's means without Thompson sampling; the head observing the rows without Thompson sampling:
# rl -0.005, moe -0.001 a run.
COLD_HEAD: dict[str, Any] = {**HEAD["head"], "center": True, "scale": 1.0, "clusters": 4, "cluster_scale": 5.0}
START_CONFIG: dict[str, dict[str, Any]] = {
    "cold": {"thompson_scale": 0.1, "head": COLD_HEAD},
    "warm": {"network_weight": 0.5, "thompson_scale": 0.1},
}


@dataclass
class OnlineBenchConfig:
    """What `routerllm bench-online` runs; each field is a command-line option."""

    data: str
    out: str
    experts: str = "seed4"
    passes: int = 3
    lam: float = 0.1
    seed: int = 0
    """Seeds the split, the set-aside slice and the stream order, and (without sampling_seed) the routers."""
    sampling_seed: int | None = None
    """Seeds the routers alone (the learners' networks, replay and exploration draws, the warm fits, VW's draws):
    other draws on the same stream, to tell a setting's spread from one draw (None: seed)."""
    holdout: float = 0.3
    """Fraction of prompts (stratified by task) held out of the stream to evaluate the final policies."""
    set_aside: float = 0.1
    """Fraction of the rest (stratified by task) that rates the experts (the catalog's quality priors and prices,
    where a cold learner's head starts) and is never streamed; 0 rates them on the stream itself."""
    rating_prior: bool = True
    """Seed cold learners' heads and VW with the set-aside rows' outcomes, every expert on every prompt
    (outcome_head.observe_rated; VowpalWabbitRouter.pretrain): the operator's rating benchmark as a per-prompt prior,
    not only the catalog's means. In the shift scenario only the old tasks' rows, as for the warm starts."""
    limit: int | None = None
    """Use at most this many prompts (a stratified sample), for quick runs."""
    strategies: list[str] = field(default_factory=lambda: ["rl", "moe"])
    starts: list[str] = field(default_factory=lambda: ["cold", "warm"])
    vw: bool = True
    full_information: bool = True
    """Run the full-information reference (FullInformationRouter): the cold head told every expert's outcome."""
    window: int = 250
    """Events per point of the learning curve."""
    step_every: int = 1
    """Events between learner steps (1: the learner keeps up with every feedback)."""
    warm_dir: str | None = None
    """Directory with <strategy>/ checkpoints from `routerllm train` to warm-start from (None: fit them here)."""
    warm_head: bool = True
    """Warm learners' heads observe every expert's outcome on the training rows of the offline fit (warm_rows), as
    `routerllm rate STRATEGY --from FIT` seeds a served one; False: they start at the catalog's means (the shift
    tables before session 16)."""
    learner: dict[str, Any] = field(default_factory=dict)
    """LearnerConfig overrides on top of BENCH_LEARNER."""
    strategy_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-strategy config overrides (e.g. {"rl": {"tau": 0.05}}), on top of STRATEGY_CONFIG."""
    exploration: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-start overrides of EXPLORATION (e.g. {"cold": {"epsilon_start": 0.3}})."""
    trainer_options: dict[str, list[str]] = field(default_factory=dict)
    """Offline trainer arguments of the warm-start fits, e.g. {"rl": ["--total-steps", "5000"]}."""
    embedder: str | None = None
    torch_threads: int = 1
    progress: bool = True
    shift: ShiftPlan | None = None
    """The shift scenario (shift.py) instead of `passes` shuffled passes; warm starts then see the old tasks only."""

    @property
    def router_seed(self) -> int:
        """The seed of every router's own draws: sampling_seed, else seed."""
        return self.seed if self.sampling_seed is None else self.sampling_seed


# --- set-up ---------------------------------------------------------------------------------------------
def prepare_stream(config: OnlineBenchConfig) -> Stream:
    """The benchmark's data (training/data/prepared.py, `holdout` held out, `set_aside` rating the experts) replayed
    `passes` times."""
    data = prepared.prepare(
        config.data,
        config.experts,
        split=config.holdout,
        limit=config.limit,
        seed=config.seed,
        embedder=config.embedder,
    )
    data = prepared.set_aside(data, config.set_aside, config.seed, source=config.data)
    if config.shift is not None:
        return Stream.shifted(data, config.shift, config.lam, config.seed)
    return Stream.replay(data, config.passes, config.lam, config.seed)


def warm_checkpoint(name: str, stream: Stream, config: OnlineBenchConfig, root: Path) -> str:
    """A checkpoint of `name` fitted offline on the training part (what `routerllm train` runs), or the one in
    --warm-dir."""
    if config.warm_dir:
        return str(Path(config.warm_dir) / name)
    module = require_trainer(name)
    options = {
        **trainer_options(module, config.trainer_options.get(name)),
        "seed": config.router_seed,
        "progress": False,
    }
    rows = warm_rows(stream, config)
    table = stream.train.subset(rows)
    strategy = module.fit_from_table(table, stream.train_embeddings[rows], stream.catalog, **options)
    path = root / "warm" / name
    strategy.save(path, metrics={"n_train": len(table), "options": options})
    return str(path)


def warm_rows(stream: Stream, config: OnlineBenchConfig) -> np.ndarray:
    """Training rows of the warm starts' offline fits: all of them, or in the shift scenario the old tasks' (the new
    task is missing from the warm start's training as it is from phase 1)."""
    return np.arange(len(stream.train)) if config.shift is None else old_task_rows(stream.train.tasks, config.shift)


def warm_head_checkpoint(
    name: str, strategy_config: dict[str, Any], stream: Stream, warm: str, rows: np.ndarray, observe: bool, root: Path
) -> str:
    """The offline fit at `warm` under the online strategy config, its head prepared on the training `rows` it was
    fitted on: with `observe`, the head observes every expert's outcome on them (outcome_head.observe_rated, which
    also centres a head with `center` on and fits the prompt types of one with `clusters`), as `routerllm rate --from`
    does for a served one; without, the head observes nothing: one with `center` on is only centred on their mean
    embedding (BayesianOutcomeHead.set_center), one with `clusters` only given its prompt types (fit_prototypes)."""
    cls = get_strategy_class(name)
    strategy = cls(stream.catalog, cls.Config(**strategy_config))
    strategy.load(warm)
    if observe:
        table = stream.train.subset(rows)
        observe_rated(strategy.head, stream.train_embeddings[rows], table.scores, table.costs, strategy.profile)
        initial = f"warm from {warm}, head seeded by its {len(rows)} training prompts"
    else:
        if strategy.head.config.center:
            strategy.head.set_center(stream.train_embeddings[rows].mean(axis=0))
        if strategy.head.config.clusters:
            strategy.head.fit_prototypes(stream.train_embeddings[rows])
        initial = f"warm from {warm}, head centred or typed on {len(rows)} training prompts"
    path = root / "warm-head" / name
    strategy.save(path, metrics={"initial": initial})
    return str(path)


def rating_rows(stream: Stream, config: OnlineBenchConfig) -> np.ndarray:
    """Rows of the set-aside rating table that may seed a learner: all of them, or in the shift scenario those of
    the old tasks (the new task stays unseen until phase 2, as for the warm starts); none without a rating prior."""
    if not config.rating_prior or stream.rating is None:
        return np.arange(0)
    if config.shift is None:
        return np.arange(len(stream.rating))
    return old_task_rows(stream.rating.tasks, config.shift)


def rated_untrained(
    name: str, strategy_config: dict[str, Any], stream: Stream, rows: np.ndarray
) -> tuple[RoutingStrategy, dict[str, Any]]:
    """An untrained `name` whose head has observed the rating rows (outcome_head.observe_rated; none: the catalog's
    means alone), and what observe_rated returned."""
    cls = get_strategy_class(name)
    strategy = cls(stream.catalog, cls.Config(**strategy_config))
    if not len(rows):
        return strategy, {}
    table = stream.rating.subset(rows)
    observed = observe_rated(strategy.head, stream.rating_embeddings[rows], table.scores, table.costs, strategy.profile)
    return strategy, observed


def rated_checkpoint(name: str, strategy_config: dict[str, Any], stream: Stream, rows: np.ndarray, root: Path) -> str:
    """A checkpoint of rated_untrained(...): the cold start of a learner that knows the operator's rating benchmark
    prompt by prompt."""
    strategy, observed = rated_untrained(name, strategy_config, stream, rows)
    path = root / "rated" / name
    strategy.save(path, metrics={"initial": "cold, head seeded by the rating table", **observed})
    return str(path)


def strategy_settings(name: str, start: str, config: OnlineBenchConfig) -> dict[str, Any]:
    """The strategy config of a `start` learner of `name`: STRATEGY_CONFIG, START_CONFIG, then --set overrides."""
    return {
        **STRATEGY_CONFIG.get(name, {}),
        **START_CONFIG[start],
        **config.strategy_config.get(name, {}),
        "seed": config.router_seed,
    }


def exploration_settings(start: str, config: OnlineBenchConfig) -> dict[str, Any]:
    """The StrategyTraining exploration fields of a `start` learner: EXPLORATION, then --explore overrides."""
    return {**EXPLORATION[start], **config.exploration.get(start, {})}


def check_overrides(config: OnlineBenchConfig) -> None:
    """Before any work: every start (--starts, and those --explore names) exists, every --explore field is a valid
    StrategyTraining field, and --set names only online learners (a clear ValueError, not a run that ignores it)."""
    for flag, starts in (("starts", config.starts), ("--explore starts", list(config.exploration))):
        unknown = [s for s in starts if s not in EXPLORATION]
        if unknown:
            raise ValueError(f"Invalid {flag} {unknown}. Available starts are {sorted(EXPLORATION)}")
    learners = set(STRATEGY_CONFIG) | set(config.strategies)
    unknown = sorted(set(config.strategy_config) - learners)
    if unknown:
        raise ValueError(f"--set names strategies {unknown} that do not learn online here: {sorted(learners)}")
    for start in config.exploration:
        try:
            StrategyTraining(**exploration_settings(start, config))
        except ValidationError as e:
            why = "; ".join(f"{start}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ValueError(f"Invalid --explore {why}") from None


def build_learner(name: str, start: str, stream: Stream, config: OnlineBenchConfig, root: Path) -> OnlineLearner:
    """An OnlineLearner over an in-memory store, training one strategy, as the benchmark runs it."""
    strategy_config = strategy_settings(name, start, config)
    # Where the learner starts: an offline fit (warm), a head that has seen the rating table (cold, rating prior),
    # or nothing (cold: the catalog's means).
    rows = rating_rows(stream, config)
    if start == "warm":
        initial = warm_checkpoint(name, stream, config, root)
        head = strategy_config.get("head") or {}
        if head and (config.warm_head or head.get("center") or head.get("clusters")):
            initial = warm_head_checkpoint(
                name, strategy_config, stream, initial, warm_rows(stream, config), config.warm_head, root
            )
    elif len(rows) and strategy_config.get("head"):
        initial = rated_checkpoint(name, strategy_config, stream, rows, root)
    else:
        initial = None
    training = StrategyTraining(warm_start=initial, config=strategy_config, **exploration_settings(start, config))
    learner_config = LearnerConfig(
        store_path=MEMORY,
        checkpoint_dir=str(root / f"{name}-{start}"),
        strategies={name: training},
        seed=config.router_seed,
        **{**BENCH_LEARNER, **config.learner},
    )
    return OnlineLearner(learner_config, stream.catalog)
