"""Feedback poisoning: how far one key that always scores the priciest expert 1 and every other expert 0 moves the
live policy, with and without the learner's per-key cap (LearnerConfig.feedback_cap_per_key, applied by the
outcome store when the feedback is written).

The stream is one or more passes over a RouterBench training part (stream.py), routed by an OnlineLearner's live
policy exactly as online.py drives it, on a simulated clock (`seconds_per_event` per request). Each request comes
from the poisoning key with probability `poison_share`, otherwise from one of `honest_keys` keys in turn, which
score the answer with its recorded score. Runs on the same stream: honest (nobody poisons), honest again with
another learner seed (how far the shares move with no poison at all: the noise floor), poisoned without the cap,
and poisoned with each cap of `caps`. Reported per run: the final live policy's greedy choice shares on the
held-out prompts, the priciest expert's share, the total variation distance of the shares from the honest run's,
and how many of the poisoner's scores the learner learned.

    python -m training.benchmarks.poisoning --data ../shared/data/routerbench --out runs/poisoning
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext
from training.benchmarks.online_setup import (
    BENCH_LEARNER,
    EXPLORATION,
    STRATEGY_CONFIG,
    OnlineBenchConfig,
    prepare_stream,
)
from training.benchmarks.stream import Stream
from training.online.learner import LearnerConfig, OnlineLearner, StrategyTraining, apply_policy
from training.online.outcome_store import MEMORY, OutcomeRecord

POISONER = "key_poison"


@dataclass
class PoisoningConfig:
    """One poisoning measurement; each field is a command-line option."""

    data: str
    out: str | None = None
    experts: str = "seed4"
    strategy: str = "moe"
    passes: int = 2
    lam: float = 0.1
    seed: int = 0
    limit: int | None = None
    """Use at most this many prompts (a stratified sample), for quick runs."""
    poison_share: float = 0.5
    """Share of the requests the poisoning key sends."""
    honest_keys: int = 100
    """Honest keys, taking turns (100 at 0.5 requests/s: 18 feedbacks an hour each, under every cap measured)."""
    caps: tuple[int, ...] = (25, 50, 100, 200)
    """The learner's caps to measure: feedbacks of one key it reads per window (50 is LearnerConfig's default)."""
    cap_window_s: float = 3600.0
    seconds_per_event: float = 1.0
    """Simulated seconds between requests (all keys together)."""


class Clock:
    """The simulated clock the learner and its store read."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def learner(
    stream: Stream, config: PoisoningConfig, cap: int | None, root: Path, clock: Clock, seed: int
) -> OnlineLearner:
    """An OnlineLearner over an in-memory store as the online benchmark builds one, with the cap under test."""
    name = config.strategy
    strategy_config = {**STRATEGY_CONFIG.get(name, {}), "seed": seed}
    training = StrategyTraining(config=strategy_config, **EXPLORATION["cold"])
    learner_config = LearnerConfig(
        store_path=MEMORY,
        checkpoint_dir=str(root),
        strategies={name: training},
        seed=seed,
        **{**BENCH_LEARNER, "feedback_cap_per_key": cap, "feedback_cap_window_s": config.cap_window_s},
    )
    return OnlineLearner(learner_config, stream.catalog, clock=clock)


def replay(
    stream: Stream, config: PoisoningConfig, poison_share: float, cap: int | None, root: Path, seed: int
) -> dict:
    """Replay the stream with a poisoning key sending `poison_share` of the requests; the final greedy shares."""
    clock, rng, name = Clock(), np.random.default_rng(config.seed + 1), config.strategy
    online = learner(stream, config, cap, root, clock, seed)
    weights = ObjectiveWeights(quality=1.0, cost=stream.lam)
    replica = apply_policy(online.trainees[name].live, *_pull(online, name))
    priciest = int(stream.train.costs.mean(axis=0).argmax())
    poisoned = 0
    for event, row in enumerate(stream.rows):
        clock.t = event * config.seconds_per_event
        context = RouteContext(text="", embedding=stream.train_embeddings[row], weights=weights)
        decision = replica.route_batch([context])[0]
        j = stream.catalog.index(decision.expert)
        poison = rng.random() < poison_share
        caller = POISONER if poison else f"key_honest{event % config.honest_keys}"
        rid = f"e{event}"
        online.record_outcome(
            OutcomeRecord(
                request_id=rid,
                strategy=name,
                expert=decision.expert,
                embedding=stream.train_embeddings[row],
                policy_version=decision.policy_version,
                probs=decision.probs,
                weights=weights,
                cost_usd=float(stream.train.costs[row, j]),
                caller=caller,
            )
        )
        score = float(j == priciest) if poison else float(stream.train.scores[row, j])
        online.record_feedback(rid, score, caller=caller)
        poisoned += poison
        online.step()
        if online.live_versions()[name] != replica.policy_version:
            replica = apply_policy(replica, *_pull(online, name))
    return {"shares": greedy_shares(online, stream, name), "poisoned": poisoned, **_learned(online, poisoned)}


def _pull(online: OnlineLearner, name: str) -> tuple:
    version, arrays = online.get_policy(name)
    return version, arrays, online.routing_settings(name)


def _learned(online: OnlineLearner, poisoned: int) -> dict[str, int]:
    """How many of the poisoner's scores the learner read, and how many feedbacks (anyone's) were over a cap."""
    learned = sum(e.outcome.caller == POISONER for e in online.store.experiences_after(0))
    return {"poison_learned": learned, "over_cap": online.store.over_cap()}


def greedy_shares(online: OnlineLearner, stream: Stream, name: str) -> list[float]:
    """Share of the held-out prompts the live policy sends to each expert, greedily."""
    version, arrays = online.get_policy(name)
    router = apply_policy(online.trainees[name].live, version, arrays, {"epsilon": 0.0})
    weights = ObjectiveWeights(quality=1.0, cost=stream.lam)
    contexts = [RouteContext(text="", embedding=e, weights=weights) for e in stream.held_out_embeddings]
    picks = [stream.catalog.index(d.expert) for d in router.route_batch(contexts)]
    return (np.bincount(picks, minlength=len(stream.catalog)) / len(picks)).tolist()


def run_poisoning(config: PoisoningConfig) -> dict[str, Any]:
    """The three runs (honest, poisoned without the cap, poisoned with it) and how far each moved the shares."""
    bench = OnlineBenchConfig(
        data=config.data,
        out="",
        experts=config.experts,
        passes=config.passes,
        lam=config.lam,
        seed=config.seed,
        limit=config.limit,
    )
    stream = prepare_stream(bench)
    s = config.seed
    runs = {"honest": (0.0, None, s), "honest_other_seed": (0.0, None, s + 100)}
    runs["poisoned_uncapped"] = (config.poison_share, None, s)
    runs.update({f"poisoned_cap_{cap}": (config.poison_share, cap, s) for cap in config.caps})
    results: dict[str, Any] = {"config": asdict(config), "experts": stream.catalog.names, "n_stream": len(stream.rows)}
    priciest = int(stream.train.costs.mean(axis=0).argmax())
    results["priciest"] = stream.catalog.names[priciest]
    results["runs"] = list(runs)
    with tempfile.TemporaryDirectory(prefix="poisoning-") as tmp:
        for label, (share, cap, seed) in runs.items():
            results[label] = replay(stream, config, share, cap, Path(tmp) / label, seed)
    honest = np.array(results["honest"]["shares"])
    for label in runs:
        shares = np.array(results[label]["shares"])
        results[label]["priciest_share"] = float(shares[priciest])
        results[label]["total_variation"] = float(0.5 * np.abs(shares - honest).sum())
    if config.out:
        Path(config.out).mkdir(parents=True, exist_ok=True)
        (Path(config.out) / "results.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="RouterBench CSV file or directory")
    parser.add_argument("--out", default=None, help="directory for results.json")
    parser.add_argument("--limit", type=int, default=None, help="at most this many prompts (stratified)")
    defaults = PoisoningConfig(data="")
    for name in ("experts", "strategy", "passes", "lam", "seed", "poison_share", "honest_keys"):
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(value), default=value)
    parser.add_argument("--caps", type=_ints, default=defaults.caps, help="caps to measure, e.g. 50,200")
    config = PoisoningConfig(**vars(parser.parse_args(argv)))
    results = run_poisoning(config)
    print(f"priciest expert: {results['priciest']}; {results['n_stream']} requests")
    for label in results["runs"]:
        r = results[label]
        print(
            f"{label:20s} priciest share {r['priciest_share']:.3f}  total variation {r['total_variation']:.3f}  "
            f"poison sent {r['poisoned']}, learned {r['poison_learned']}"
        )


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


if __name__ == "__main__":
    main()
