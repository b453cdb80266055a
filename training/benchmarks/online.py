"""Online benchmark: replay a stream of prompts through routers that learn from feedback as they serve.

The stream is `passes` shuffled passes over the training part of a RouterBench table (the rest is held out). For
each prompt the router under test picks an expert (or a fan-out); the feedback is the score that expert recorded
on that prompt, and the reward is training/rewards.bandit_reward:
    reward = score of the answer returned - lam * cost of every expert called / (priciest expert's mean cost).
Routers under test:
- the online learners (rl, moe), cold start or warm-started from an offline fit on the training part, driven
  through the same OnlineLearner the learner actor wraps: outcomes and feedback go into its store, `step()` trains
  with the strategies' own learn() and publishes versions, and a simulated router replica pulls each new version
  the way a Serve replica does (apply_policy) and routes with it, exploration included;
- Vowpal Wabbit's contextual bandit (`--cb_explore_adf --squarecb`, shared features = the prompt embedding
  interacted with the expert id by `-q SA`, since without an interaction ADF can only learn one score per expert);
- references computed from the table: the best fixed expert in hindsight (on the stream), the oracle, random.
Anything else that implements StreamRouter (e.g. the whole Serve graph over HTTP) plugs in via `extra_routers`.

Reported: average reward over the stream, reward per window, and the final greedy policy's quality, cost and
reward on the held-out prompts.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from experts.catalog import ExpertCatalog
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext
from training.data.routerbench import OutcomeTable, catalog_from_table, load_routerbench, resolve_experts
from training.online.learner import LearnerConfig, OnlineLearner, StrategyTraining, apply_policy
from training.online.outcome_store import MEMORY, OutcomeRecord
from training.rewards import bandit_reward

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
# Exploration: a cold start explores more and longer than a warm start from an offline fit. Cold 0.1 -> 0.01 over
# 1,000 experiences beat 0.2 -> 0.02 over 2,000 for rl on mix4 (lam 0.5: 0.756 vs 0.731). moe has no epsilon
# (its config has no such field), so these only reach strategies that explore.
EXPLORATION: dict[str, dict[str, float]] = {
    "cold": {"epsilon_start": 0.1, "epsilon_end": 0.01, "epsilon_decay_experiences": 1000},
    "warm": {"epsilon_start": 0.05, "epsilon_end": 0.01, "epsilon_decay_experiences": 1000},
}
# Strategy settings of the online learners (their own config fields), on top of each strategy's defaults. The gate
# learns online with a larger step than offline (mix4, lam 0.5, cold: 0.763 at 3e-3 vs 0.738 at 1e-3).
STRATEGY_CONFIG: dict[str, dict[str, Any]] = {"moe": {"learning_rate": 3e-3}}
VW_ARGS = "--cb_explore_adf --squarecb -q SA --quiet"


@dataclass
class OnlineBenchConfig:
    """What `routerllm bench-online` runs; each field is a command-line option."""

    data: str
    out: str
    experts: str = "seed4"
    passes: int = 3
    lam: float = 0.1
    seed: int = 0
    holdout: float = 0.3
    """Fraction of prompts (stratified by task) held out of the stream to evaluate the final policies."""
    limit: int | None = None
    """Use at most this many prompts (a stratified sample), for quick runs."""
    strategies: list[str] = field(default_factory=lambda: ["rl", "moe"])
    starts: list[str] = field(default_factory=lambda: ["cold", "warm"])
    vw: bool = True
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


@dataclass
class Stream:
    """The replayed prompts and everything needed to score a choice on them."""

    train: OutcomeTable
    held_out: OutcomeTable
    train_embeddings: np.ndarray
    held_out_embeddings: np.ndarray
    catalog: ExpertCatalog
    rows: np.ndarray
    """Training-table row of each event."""
    lam: float
    max_mean_cost: float

    def rewards(self, table: OutcomeTable) -> np.ndarray:
        """bandit_reward of every expert on every prompt of `table`, [n, n_experts]."""
        return bandit_reward(table.scores, table.costs, self.lam, self.max_mean_cost)

    def reward(self, row: int, experts: list[int]) -> float:
        """The answer's (first expert's) score minus lam times the cost of every expert called."""
        cost = float(self.train.costs[row, experts].sum())
        return float(bandit_reward(self.train.scores[row, experts[0]], cost, self.lam, self.max_mean_cost))


class StreamRouter(Protocol):
    """A router under test. The `--through-serve` mode implements this over HTTP (route = a chat completion with
    model "router", feedback = POST /v1/feedback with the recorded score)."""

    def route(self, event: int, row: int) -> list[int]:
        """Experts called for this event (catalog indices); the first one's answer is returned."""

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        """Report the recorded outcome of each expert called."""

    def greedy(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        """The final policy's choice (no exploration) for each held-out prompt."""

    def summary(self) -> dict[str, Any]:
        """Extra figures for results.json (publishes, ...)."""


# --- routers under test ---------------------------------------------------------------------------------
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
        ids = [str(event) if k == 0 else f"{event}:{s.catalog.names[j]}" for k, j in enumerate(experts)]
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
        router = apply_policy(self.replica, version, arrays, {**settings, "epsilon": 0.0})
        contexts = [RouteContext(text=t, embedding=e, weights=self.weights) for t, e in zip(texts, embeddings)]
        return np.array([self.stream.catalog.index(d.expert) for d in router.route_batch(contexts)])

    def summary(self) -> dict[str, Any]:
        s = self.learner.status()["strategies"][self.name]
        keys = ("live_version", "updates", "publishes", "unchecked_publishes", "refused_publishes", "epsilon")
        return {k: s[k] for k in keys}


class VowpalWabbitRouter:
    """VW's contextual bandit with action-dependent features (one example line per expert)."""

    def __init__(self, stream: Stream, seed: int = 0, args: str = VW_ARGS):
        try:
            from vowpalwabbit import Workspace
        except ImportError as e:
            raise ModuleNotFoundError(
                "the Vowpal Wabbit reference needs the vowpalwabbit package (pip install -e '.[bench]'), "
                "or pass --no-vw"
            ) from e

        self.stream, self.args = stream, f"{args} --random_seed {seed}"
        self.vw = Workspace(self.args)
        self.rng = np.random.default_rng(seed)
        self.pmf: np.ndarray | None = None

    def _example(self, embedding: np.ndarray, label: tuple[int, float, float] | None = None) -> list[str]:
        lines = ["shared |S " + " ".join(f"{i}:{v:.6f}" for i, v in enumerate(embedding))]
        for j in range(len(self.stream.catalog)):
            prefix = f"0:{label[1]:.6f}:{label[2]:.6f} " if label and label[0] == j else ""
            lines.append(f"{prefix}|A e{j}")
        return lines

    def _pmf(self, embedding: np.ndarray) -> np.ndarray:
        pmf = np.asarray(self.vw.predict(self._example(embedding)), dtype=np.float64)
        return pmf / pmf.sum()

    def route(self, event: int, row: int) -> list[int]:
        self.pmf = self._pmf(self.stream.train_embeddings[row])
        return [int(self.rng.choice(len(self.pmf), p=self.pmf))]

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        a = experts[0]
        cost = -self.stream.reward(row, experts)  # VW minimises cost
        self.vw.learn(self._example(self.stream.train_embeddings[row], (a, cost, float(self.pmf[a]))))

    def greedy(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        return np.array([int(np.argmax(self._pmf(e))) for e in embeddings])

    def summary(self) -> dict[str, Any]:
        return {"vw_args": self.args}


# --- the replay -----------------------------------------------------------------------------------------
def replay_stream(router: StreamRouter, stream: Stream, desc: str = "", progress: bool = True) -> np.ndarray:
    """Drive one router through the stream; returns the reward of every event."""
    rewards = np.empty(len(stream.rows))
    for event, row in enumerate(tqdm(stream.rows, desc=desc, unit="req", disable=not progress, leave=False)):
        experts = router.route(event, int(row))
        rewards[event] = stream.reward(int(row), experts)
        router.feedback(event, int(row), experts)
    return rewards


def held_out_figures(stream: Stream, choices: np.ndarray) -> dict[str, float]:
    """Quality, cost per 1,000 requests and reward of top-1 choices on the held-out prompts."""
    rows = np.arange(len(stream.held_out))
    return {
        "quality": float(stream.held_out.scores[rows, choices].mean()),
        "cost_per_1k": float(stream.held_out.costs[rows, choices].mean() * 1000.0),
        "reward": float(stream.rewards(stream.held_out)[rows, choices].mean()),
    }


def curve(rewards: np.ndarray, window: int) -> list[float]:
    return [float(rewards[i : i + window].mean()) for i in range(0, len(rewards), window)]


def references(stream: Stream) -> dict[str, Any]:
    """Best fixed expert in hindsight (on the stream), oracle and random, on the stream and held out."""
    on_stream = stream.rewards(stream.train)[stream.rows]
    held = stream.rewards(stream.held_out)
    best = int(on_stream.mean(axis=0).argmax())
    n_held = len(stream.held_out)
    oracle = held.argmax(axis=1)
    return {
        "best_fixed": {
            "expert": stream.catalog.names[best],
            "average_reward": float(on_stream[:, best].mean()),
            "held_out": held_out_figures(stream, np.full(n_held, best)),
        },
        "oracle": {"average_reward": float(on_stream.max(axis=1).mean()), "held_out": held_out_figures(stream, oracle)},
        "random": {
            "average_reward": float(on_stream.mean()),
            "held_out": {"reward": float(held.mean()), "quality": float(stream.held_out.scores.mean())},
        },
        "per_expert_average_reward": dict(zip(stream.catalog.names, on_stream.mean(axis=0).tolist())),
    }


# --- set-up ---------------------------------------------------------------------------------------------
def prepare_stream(config: OnlineBenchConfig) -> Stream:
    from training.benchmarks.offline import embed

    table = load_routerbench(config.data, resolve_experts(config.experts))
    if config.limit is not None and config.limit < len(table):
        table = table.split(test_fraction=config.limit / len(table), seed=config.seed)[1]
    train, held_out = table.split(config.holdout, config.seed)
    rng = np.random.default_rng(config.seed)
    rows = np.concatenate([rng.permutation(len(train)) for _ in range(config.passes)])
    return Stream(
        train=train,
        held_out=held_out,
        train_embeddings=embed(train.prompts, config.embedder),
        held_out_embeddings=embed(held_out.prompts, config.embedder),
        catalog=catalog_from_table(train, data=config.data),
        rows=rows,
        lam=config.lam,
        max_mean_cost=float(train.costs.mean(axis=0).max()),
    )


def warm_checkpoint(name: str, stream: Stream, config: OnlineBenchConfig, root: Path) -> str:
    """A checkpoint of `name` fitted offline on the training part (what `routerllm train` runs), or the one in
    --warm-dir."""
    if config.warm_dir:
        return str(Path(config.warm_dir) / name)
    from training.benchmarks.offline import trainer_module, trainer_options

    module = trainer_module(name)
    options = {**trainer_options(module, config.trainer_options.get(name)), "seed": config.seed, "progress": False}
    strategy = module.fit_from_table(stream.train, stream.train_embeddings, stream.catalog, **options)
    path = root / "warm" / name
    strategy.save(path, metrics={"n_train": len(stream.train), "options": options})
    return str(path)


def build_learner(name: str, start: str, stream: Stream, config: OnlineBenchConfig, root: Path) -> OnlineLearner:
    """An OnlineLearner over an in-memory store, training one strategy, as the benchmark runs it."""
    warm = warm_checkpoint(name, stream, config, root) if start == "warm" else None
    strategy_config = {**STRATEGY_CONFIG.get(name, {}), **config.strategy_config.get(name, {}), "seed": config.seed}
    exploration = {**EXPLORATION[start], **config.exploration.get(start, {})}
    training = StrategyTraining(warm_start=warm, config=strategy_config, **exploration)
    learner_config = LearnerConfig(
        store_path=MEMORY,
        checkpoint_dir=str(root / f"{name}-{start}"),
        strategies={name: training},
        seed=config.seed,
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
    unknown = [s for s in config.starts if s not in EXPLORATION]
    if unknown:
        raise ValueError(f"Invalid starts {unknown}. Available starts are {sorted(EXPLORATION)}")
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
        factories["vw-squarecb"] = lambda s, c, root: VowpalWabbitRouter(s, c.seed)
    factories.update(extra_routers or {})

    results: dict[str, Any] = {
        "config": asdict(config),
        "experts": stream.catalog.names,
        "n_train": len(stream.train),
        "n_held_out": len(stream.held_out),
        "n_stream": len(stream.rows),
        "max_mean_cost": stream.max_mean_cost,
        "references": references(stream),
        "routers": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        for name, factory in factories.items():
            started = time.perf_counter()
            router = factory(stream, config, Path(tmp))
            rewards = replay_stream(router, stream, desc=name, progress=config.progress)
            greedy = router.greedy(stream.held_out_embeddings, stream.held_out.prompts)
            n = len(stream.train)
            results["routers"][name] = {
                "average_reward": float(rewards.mean()),
                "per_pass": [float(rewards[p * n : (p + 1) * n].mean()) for p in range(config.passes)],
                "windows": curve(rewards, config.window),
                "held_out": held_out_figures(stream, greedy),
                "wall_s": time.perf_counter() - started,
                **router.summary(),
            }
            tqdm.write(f"{name}: average reward {rewards.mean():.4f} ({results['routers'][name]['wall_s']:.0f} s)")
    results["targets"] = targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_learning_curves(results, out / "learning_curve.png")
    return results


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


def plot_learning_curves(results: dict[str, Any], path: str | Path) -> None:
    """Reward per window for every router, with the references as horizontal lines and passes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = results["config"]["window"]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, r in results["routers"].items():
        x = (np.arange(len(r["windows"])) + 0.5) * window
        ax.plot(x, r["windows"], marker="o", markersize=3, label=f"{name} (avg {r['average_reward']:.3f})")
    styles = {"oracle": ":", "best_fixed": "--", "random": "-."}
    for key, ref in results["references"].items():
        if key in styles:
            label = f"{key} {ref.get('expert', '')} ({ref['average_reward']:.3f})".replace("  ", " ")
            ax.axhline(ref["average_reward"], color="grey", linestyle=styles[key], linewidth=1, label=label)
    n_train = results["n_train"]
    for p in range(1, results["config"]["passes"]):
        ax.axvline(p * n_train, color="black", alpha=0.2)
    ax.set_xlabel("requests served (stream position); vertical lines: pass boundaries")
    ax.set_ylabel(f"reward per window of {window} (score - {results['config']['lam']} x normalised cost)")
    ax.set_title(f"{results['config']['experts']}: {', '.join(results['experts'])}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- command line ---------------------------------------------------------------------------------------
def parse_dotted(pairs: list[str], what: str) -> dict[str, dict[str, Any]]:
    """`rl.tau=0.05` -> {"rl": {"tau": 0.05}}; values are JSON when they parse as JSON, else strings."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot and name and option):
            raise ValueError(f"Invalid {what} {pair!r}: expected NAME.OPTION=VALUE, e.g. rl.tau=0.05")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(name, {})[option] = value
    return out


def run_cli(args) -> int:
    """`routerllm bench-online` (arguments parsed by training/cli.py)."""
    from training.benchmarks.offline import parse_set_options

    def names(text: str) -> list[str]:
        return [s.strip() for s in text.split(",") if s.strip()]

    config = OnlineBenchConfig(
        data=args.data,
        out=args.out,
        experts=args.experts,
        passes=args.passes,
        lam=args.lam,
        seed=args.seed,
        holdout=args.holdout,
        limit=args.limit,
        strategies=names(args.strategies),
        starts=names(args.starts),
        vw=args.vw,
        window=args.window,
        warm_dir=args.warm_dir,
        learner=parse_dotted([f"learner.{p}" for p in args.learner], "--learner").get("learner", {}),
        strategy_config=parse_dotted(args.set_options, "--set"),
        trainer_options=parse_set_options(args.trainer_options),
        embedder=args.embedder,
    )
    extra = None
    if getattr(args, "through_serve", False):
        from training.benchmarks.over_http import serve_routers

        # Over HTTP: the served learners replace the in-process ones (the references and VW stay).
        extra = serve_routers(config.strategies, replicas=args.serve_replicas)
        config.strategies = []
    started = time.perf_counter()
    results = run_online_bench(config, extra_routers=extra)
    print(format_results(results))
    print(f"wrote {args.out}/results.json and {args.out}/learning_curve.png in {time.perf_counter() - started:.0f} s")
    return 0


def format_results(results: dict[str, Any]) -> str:
    """A text table: average reward over the stream, per pass, and the final greedy policy held out."""
    passes = results["config"]["passes"]
    header = f"{'router':<20}{'avg reward':>11}" + "".join(f"{f'pass {p + 1}':>8}" for p in range(passes))
    header += f"{'held-out q':>11}{'$/1k':>8}{'reward':>8}{'wall s':>8}"
    lines = [header, "-" * len(header)]
    for name, r in results["routers"].items():
        h = r["held_out"]
        lines.append(
            f"{name:<20}{r['average_reward']:>11.4f}"
            + "".join(f"{x:>8.3f}" for x in r["per_pass"])
            + f"{h['quality']:>11.3f}{h['cost_per_1k']:>8.3f}{h['reward']:>8.3f}{r['wall_s']:>8.0f}"
        )
    refs = results["references"]
    lines.append(
        f"references (average reward over the stream): best fixed {refs['best_fixed']['expert']} "
        f"{refs['best_fixed']['average_reward']:.4f}, oracle {refs['oracle']['average_reward']:.4f}, "
        f"random {refs['random']['average_reward']:.4f}"
    )
    return "\n".join(lines)
