"""Online benchmark: replay a stream of prompts through routers that learn from feedback as they serve.

The stream is `passes` shuffled passes over the training part of a RouterBench table (the rest is held out), less a
`set_aside` slice that rates the experts (the catalog a cold learner's prior comes from) and is never streamed; the
reward of a choice is what that expert recorded on the prompt (stream.py). Routers under test:
- the online learners (rl, moe), cold start or warm-started from an offline fit on the training part, driven
  through the same OnlineLearner the learner actor wraps: outcomes and feedback go into its store, `step()` trains
  with the strategies' own learn() and publishes versions, and a simulated router replica pulls each new version
  the way a Serve replica does (apply_policy) and routes with it, exploration included;
- Vowpal Wabbit's contextual bandit (vowpal_wabbit.py);
- references computed from the table: the best fixed expert in hindsight (on the stream), the oracle, random.
Anything else that implements StreamRouter (e.g. the whole Serve graph over HTTP, over_http.py) plugs in via
`extra_routers`; training/cli.py wires that in for `--through-serve`.

Reported: average reward over the stream, reward per window, and the final greedy policy's quality, cost and
reward on the held-out prompts; plots.py draws the learning curves and tables.py prints the table.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError
from tqdm import tqdm

from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext, RoutingStrategy, get_strategy_class
from router_deployments.strategies.outcome_head import observe_rated
from training.benchmarks.plots import plot_learning_curves
from training.benchmarks.shift import ShiftPlan, old_task_rows, phase_figures
from training.benchmarks.stream import Stream, StreamRouter, held_out_figures, references, replay_stream, window_means
from training.benchmarks.vowpal_wabbit import VowpalWabbitRouter
from training.data import prepared
from training.online.learner import LearnerConfig, OnlineLearner, StrategyTraining, apply_policy
from training.online.outcome_store import MEMORY, OutcomeRecord, outcome_id
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
# Warm starts keep the uncentred head: their offline fit carries no rating table to centre on.
COLD_HEAD: dict[str, Any] = {**HEAD["head"], "center": True, "scale": 1.6}
START_CONFIG: dict[str, dict[str, Any]] = {
    "cold": {"thompson_scale": 0.1, "head": COLD_HEAD},
    "warm": {"network_weight": 0.5},
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


# --- the online learners under test ----------------------------------------------------------------------
class LearnerRouter:
    """One strategy trained by an OnlineLearner, served by a simulated replica that pulls published versions."""

    def __init__(self, name: str, learner: OnlineLearner, stream: Stream, step_every: int = 1):
        self.name, self.learner, self.stream, self.step_every = name, learner, stream, step_every
        self.weights = ObjectiveWeights(quality=1.0, cost=stream.lam)
        self.replica = apply_policy(learner.trainees[name].live, *self._pull())
        self.decision = None

    def _pull(self) -> tuple:
        version, arrays = self.learner.get_policy(self.name)
        return version, arrays, self.learner.routing_settings(self.name)

    def route(self, event: int, row: int) -> list[int]:
        s = self.stream
        context = RouteContext(text=s.train.prompts[row], embedding=s.train_embeddings[row], weights=self.weights)
        self.decision = self.replica.route_batch([context])[0]
        return [s.catalog.index(e) for e in self.decision.fanout]

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        s, d = self.stream, self.decision
        ids = [outcome_id(str(event), s.catalog.names[j], k) for k, j in enumerate(experts)]
        self.learner.record_outcomes(
            [
                OutcomeRecord(
                    request_id=rid,
                    group_id=str(event),
                    fanout_rank=k,
                    strategy=self.name,
                    expert=s.catalog.names[j],
                    policy_version=d.policy_version,
                    probs=d.probs,
                    embedding=s.train_embeddings[row],
                    weights=self.weights,
                    cost_usd=float(s.train.costs[row, j]),
                )
                for k, (rid, j) in enumerate(zip(ids, experts))
            ]
        )
        for rid, j in zip(ids, experts):
            self.learner.record_feedback(rid, float(s.train.scores[row, j]))
        if (event + 1) % self.step_every == 0:
            self.learner.step()
        if self.learner.live_versions()[self.name] != self.replica.policy_version:
            self.replica = apply_policy(self.replica, *self._pull())

    def greedy(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        version, arrays, settings = self._pull()
        router = apply_policy(self.replica, version, arrays, {**settings, "epsilon": 0.0, "thompson_scale": 0.0})
        contexts = [RouteContext(text=t, embedding=e, weights=self.weights) for t, e in zip(texts, embeddings)]
        return np.array([self.stream.catalog.index(d.expert) for d in router.route_batch(contexts)])

    def summary(self) -> dict[str, Any]:
        s = self.learner.status()["strategies"][self.name]
        keys = ("live_version", "updates", "publishes", "unchecked_publishes", "refused_publishes", "epsilon")
        keys += ("exploration",)
        return {k: s[k] for k in keys}


class FullInformationRouter:
    """A reference, not a learner: the cold rl head (same layout, same rating prior) that observes every expert's
    outcome on every streamed prompt and routes greedily on its posterior mean. No bandit learner with this head
    can expect more on this stream: it knows the same and more, and pays nothing to explore. Where it barely beats
    the best fixed expert, there is no room for a learner to beat it after paying for exploration."""

    def __init__(self, stream: Stream, config: OnlineBenchConfig):
        settings = {**strategy_settings("rl", "cold", config), "thompson_scale": 0.0, "epsilon": 0.0}
        self.stream, self.strategy = stream, rated_untrained("rl", settings, stream, rating_rows(stream, config))[0]
        self.weights, self.profile = ObjectiveWeights(quality=1.0, cost=stream.lam), self.strategy.profile

    def route(self, event: int, row: int) -> list[int]:
        return [int(self.greedy(self.stream.train_embeddings[row : row + 1], [self.stream.train.prompts[row]])[0])]

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        s, r = self.stream, slice(row, row + 1)
        observe_rated(self.strategy.head, s.train_embeddings[r], s.train.scores[r], s.train.costs[r], self.profile)

    def greedy(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        contexts = [RouteContext(text=t, embedding=e, weights=self.weights) for t, e in zip(texts, embeddings)]
        return np.array([self.stream.catalog.index(d.expert) for d in self.strategy.route_batch(contexts)])

    def summary(self) -> dict[str, Any]:
        return {}


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


def centred_checkpoint(name: str, strategy_config: dict[str, Any], stream: Stream, warm: str, rows, root: Path) -> str:
    """The offline fit at `warm` with a head centred on the mean embedding of the prompts it was fitted on (`rows`
    of the training part; outcome_head.BayesianOutcomeHead.set_center), for a head config with `center` on: an
    offline fit carries no head statistics, and no rating table is observed to centre on."""
    cls = get_strategy_class(name)
    strategy = cls(stream.catalog, cls.Config(**strategy_config))
    strategy.load(warm)
    strategy.head.set_center(stream.train_embeddings[rows].mean(axis=0))
    path = root / "centred" / name
    strategy.save(path, metrics={"initial": f"warm from {warm}, head centred on {len(rows)} training prompts"})
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
        if (strategy_config.get("head") or {}).get("center"):
            initial = centred_checkpoint(name, strategy_config, stream, initial, warm_rows(stream, config), root)
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


RouterFactory = Callable[[Stream, OnlineBenchConfig, Path], StreamRouter]


def run_online_bench(
    config: OnlineBenchConfig, extra_routers: dict[str, RouterFactory] | None = None
) -> dict[str, Any]:
    """Replay the stream through every router; writes results.json and learning_curve.png under config.out.

    `extra_routers` adds routers under test by name (the hook for `--through-serve`)."""
    import torch

    torch.set_num_threads(config.torch_threads)
    check_overrides(config)
    stream = prepare_stream(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    factories: dict[str, RouterFactory] = {}
    for name in config.strategies:
        for start in config.starts:
            factories[f"{name}-{start}"] = lambda s, c, root, n=name, st=start: LearnerRouter(
                n, build_learner(n, st, s, c, root), s, c.step_every
            )
    if config.vw:
        factories["vw-squarecb"] = lambda s, c, root: VowpalWabbitRouter(s, c.router_seed).pretrain(rating_rows(s, c))
    factories.update(extra_routers or {})

    results: dict[str, Any] = {
        "config": asdict(config),
        "experts": stream.catalog.names,
        "n_train": len(stream.train),
        "n_held_out": len(stream.held_out),
        "n_set_aside": stream.n_set_aside,
        "n_rating_prior": len(rating_rows(stream, config)),
        "n_stream": len(stream.rows),
        "max_mean_cost": stream.max_mean_cost,
        "references": references(stream),
        "routers": {},
    }
    rewards_by_router = {}
    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        for name, factory in factories.items():
            started = time.perf_counter()
            router = factory(stream, config, Path(tmp))
            rewards = rewards_by_router[name] = replay_stream(router, stream, desc=name, progress=config.progress)
            greedy = router.greedy(stream.held_out_embeddings, stream.held_out.prompts)
            results["routers"][name] = {
                "average_reward": float(rewards.mean()),
                "per_pass": per_pass(rewards, len(stream.train), config.passes if config.shift is None else 1),
                "windows": window_means(rewards, config.window),
                "held_out": held_out_figures(stream, greedy),
                "wall_s": time.perf_counter() - started,
                **router.summary(),
            }
            tqdm.write(f"{name}: average reward {rewards.mean():.4f} ({results['routers'][name]['wall_s']:.0f} s)")
        if config.full_information:
            results["references"]["full_information"] = full_information_figures(stream, config)
    results["targets"] = targets(results)
    if config.shift is not None:
        names = stream.catalog.names
        results["shift"] = phase_figures(
            rewards_by_router, stream.expert_rewards(), stream.shift_at, config.shift, names
        )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_learning_curves(results, out / "learning_curve.png")
    return results


def full_information_figures(stream: Stream, config: OnlineBenchConfig) -> dict[str, Any]:
    """Stream average, windows and held-out figures of FullInformationRouter (a reference: no exploration cost)."""
    router = FullInformationRouter(stream, config)
    rewards = replay_stream(router, stream, desc="full information (reference)", progress=config.progress)
    held = held_out_figures(stream, router.greedy(stream.held_out_embeddings, stream.held_out.prompts))
    return {"average_reward": float(rewards.mean()), "windows": window_means(rewards, config.window), "held_out": held}


def per_pass(rewards: np.ndarray, pass_length: int, passes: int) -> list[float]:
    """Mean reward of each pass (one pass: the whole stream, as in the shift scenario)."""
    if passes == 1:
        return [float(rewards.mean())]
    return [float(rewards[p * pass_length : (p + 1) * pass_length].mean()) for p in range(passes)]


def targets(results: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """Does each online learner beat the best fixed expert in hindsight and VW on average reward?"""
    best = results["references"]["best_fixed"]["average_reward"]
    vw = results["routers"].get("vw-squarecb", {}).get("average_reward")
    return {
        name: {
            "beats_best_fixed": r["average_reward"] > best,
            "beats_vw": None if vw is None else r["average_reward"] > vw,
        }
        for name, r in results["routers"].items()
        if name != "vw-squarecb"
    }
