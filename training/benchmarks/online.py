"""Online benchmark: replay a stream of prompts through routers that learn from feedback as they serve.

The stream is `passes` shuffled passes over the training part of a RouterBench table (the rest is held out), less a
`set_aside` slice that rates the experts (the catalog a cold learner's prior comes from) and is never streamed; the
reward of a choice is what that expert recorded on the prompt (stream.py). Routers under test:
- the online learners (rl, moe), cold start or warm-started from an offline fit on the training part (how each is
  built and with which settings: online_setup.py), driven through the same OnlineLearner the learner actor wraps:
  outcomes and feedback go into its store, `step()` trains with the strategies' own learn() and publishes
  versions, and a simulated router replica pulls each new version the way a Serve replica does (apply_policy) and
  routes with it, exploration included;
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext
from router_deployments.strategies.outcome_head import observe_rated
from training.benchmarks.online_setup import (
    OnlineBenchConfig,
    build_learner,
    check_overrides,
    prepare_stream,
    rated_untrained,
    rating_rows,
    strategy_settings,
)
from training.benchmarks.plots import plot_learning_curves
from training.benchmarks.shift import phase_figures
from training.benchmarks.stream import Stream, StreamRouter, held_out_figures, references, replay_stream, window_means
from training.benchmarks.vowpal_wabbit import VowpalWabbitRouter
from training.online.learner import OnlineLearner, apply_policy
from training.online.outcome_store import OutcomeRecord, outcome_id


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
