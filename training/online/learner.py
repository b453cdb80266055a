"""The online learner: turns logged outcomes and feedback into new policy versions, with guardrails.

One loop, read top to bottom in `step()`:
1. read the outcome+feedback pairs logged since the cursor (training/online/outcome_store.py);
2. turn each into an Experience whose reward is training/rewards.py's routing_reward under the request's own
   objective weights (the code offline training uses), and put it in each strategy's replay pool, or, for a
   `holdback_fraction` of request ids (by hash), in the held-back slice the guardrail evaluates on;
3. give each strategy its new experiences once (`observe`: models kept as sufficient statistics, such as the
   Bayesian head, must see each experience exactly once), then call its `learn(batch)` `updates_per_step` times
   per `batch_size` new experiences: each batch is new experiences topped up with samples from the replay pool
   (replay.py: by the strategy's prediction error and the answer's carbon efficiency, with importance weights, or
   uniform), after which the replayed ones get their new errors (the DQN and gating updates live in the strategies);
4. every `publish_every_updates` updates or `publish_every_s` seconds, try to publish the trained weights.

Publishing passes the guardrails (training/online/guardrails.py): weights with a NaN or inf are never published
(and training restarts from the live weights); a candidate is refused only when the upper end of the
`publish_confidence` bootstrap interval of its advantage (doubly robust with the head, else SNIPS;
`publish_estimator`) over the live policy on the held-back slice is
below -`publish_margin` (evidence that it is worse, not a point estimate); with too few agreeing held-back
experiences the check is skipped and the publish counted as unchecked.

Published versions are never-overwritten directories under checkpoint_dir with a LIVE.json pointer (policy_versions.py).
Each version's meta.json records the store cursor it had read up to, so a restarted learner loads the live version,
refills its replay from the store and continues after that cursor: nothing acknowledged is lost.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments.checkpoints import checkpoint_digest
from router_deployments.objectives import ExpertProfile
from router_deployments.policy_sync import policy_copy
from router_deployments.strategies import Experience, RoutingStrategy, get_strategy_class
from training.online.experiences import ExplorationTally, to_experience
from training.online.guardrails import below_margin, non_finite_weights, snips_estimates
from training.online.learner_config import LearnerConfig, StrategyTraining
from training.online.outcome_store import LoggedExperience, OutcomeRecord, OutcomeStore
from training.online.policy_versions import PolicyVersions
from training.online.replay import ReplayPool

logger = logging.getLogger(__name__)


@dataclass
class _Trainee:
    """One strategy under training: its trained copy, the live copy, replay and counters."""

    name: str
    settings: StrategyTraining
    strategy: RoutingStrategy
    live: RoutingStrategy
    cursor: int = 0
    replay: ReplayPool | None = None
    holdback: deque = field(default_factory=deque)
    new: list = field(default_factory=list)
    seen: int = 0
    updates: int = 0
    updates_since_publish: int = 0
    last_publish_t: float = 0.0
    publishes: int = 0
    unchecked_publishes: int = 0
    refused: dict = field(default_factory=dict)
    last_refusal: str | None = None
    last_metrics: dict = field(default_factory=dict)
    last_estimate: dict = field(default_factory=dict)
    published_at: dict = field(default_factory=dict)
    snapshot: tuple | None = None
    start: str = "cold"  # how training started: 'cold', 'warm from <checkpoint>' or 'resumed v<N>'

    @property
    def explores(self) -> bool:
        """Whether the strategy routes with an exploration rate the learner can set (its config has `epsilon`)."""
        return "epsilon" in type(self.strategy.config).model_fields

    @property
    def epsilon(self) -> float:
        s = self.settings
        frac = min(self.seen / s.epsilon_decay_experiences, 1.0)
        return s.epsilon_start + (s.epsilon_end - s.epsilon_start) * frac


class WarmStartChangedError(ValueError):
    """The config warm-starts a strategy from another checkpoint than the one its published versions grew from."""


class OnlineLearner:
    """Plain class (no Ray): record outcomes and feedback, `step()` to learn and publish, `get_policy` to pull."""

    def __init__(self, config: LearnerConfig, catalog: ExpertCatalog, clock=time.time):
        self.config = config
        self.catalog = catalog
        self.clock = clock
        self.profile = ExpertProfile(catalog)
        cap = (config.feedback_cap_per_key, config.feedback_cap_window_s) if config.feedback_cap_per_key else None
        self.store = OutcomeStore(config.store_path, ttl_s=config.feedback_ttl_s, clock=clock, caller_cap=cap)
        self.rng = np.random.default_rng(config.seed)
        self.versions = PolicyVersions(config.checkpoint_dir)
        self.cursor = 0
        self.reward_avg: dict[str, float] = {}
        self.acks: dict[str, dict[str, tuple[int, float]]] = {}
        self.skipped_unknown_expert = 0
        self.exploration = ExplorationTally()
        self.trainees = {name: self._build(name, s) for name, s in config.strategies.items()}
        self._resume()

    # --- recording (called on the serving path: store writes only) ----------------------------------------
    def record_outcome(self, outcome: OutcomeRecord) -> bool:
        """Durably log one expert call; False when its request id was already logged (a retry)."""
        return self.store.add_outcome(outcome)

    def record_outcomes(self, outcomes: list[OutcomeRecord]) -> int:
        """Durably log several calls (e.g. a whole fan-out) in one transaction; returns how many were new."""
        return self.store.add_outcomes(outcomes)

    def record_feedback(self, request_id: str, score: float, caller: str | None = None) -> int:
        """Durably log `caller`'s score; raises the store's UnknownRequestError / DuplicateFeedbackError /
        InvalidScoreError."""
        return self.store.add_feedback(request_id, score, caller=caller)

    # --- learning -------------------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        """Read what was logged since the cursor, learn from it, and publish when due. Returns what happened."""
        logged = self.store.experiences_after(self.cursor, limit=self.config.max_fetch)
        for item in logged:
            self._ingest(item, list(self.trainees.values()))
        if logged:
            self.cursor = logged[-1].cursor
            for t in self.trainees.values():
                t.cursor = max(t.cursor, self.cursor)
        report: dict[str, Any] = {"new": len(logged), "cursor": self.cursor}
        for t in self.trainees.values():
            if t.new and len(t.replay) >= self.config.min_experiences:
                self._train(t)
            if self._publish_due(t):
                report[t.name] = self.publish(t.name)
        return report

    def _train(self, t: _Trainee) -> None:
        """observe() the new experiences once, then updates_per_step learn() calls per batch_size new experiences,
        each batch topped up from replay."""
        observed = t.strategy.observe(t.new)
        size = self.config.batch_size
        for start in range(0, len(t.new), size):
            for _ in range(self.config.updates_per_step):
                new = t.new[start : start + size]
                index, replayed, weights = t.replay.sample(size - len(new), self.rng)
                batch = new + replayed
                weights = np.concatenate([np.ones(len(new)), weights])
                t.last_metrics = {**observed, **t.strategy.learn(batch, weights)}
                errors = t.strategy.errors(replayed) if replayed and t.replay.prioritised else None
                if errors is not None:
                    t.replay.update(index, errors)
                t.updates += 1
                t.updates_since_publish += 1
        t.new = []

    def _ingest(self, item: LoggedExperience, trainees: list[_Trainee], fresh: bool = True) -> None:
        """Route one logged pair into the trainees' replay or held-back slice. `fresh=False` refills after a
        restart: no counters move and nothing is marked new."""
        o = item.outcome
        if o.expert not in self.catalog.names:
            self.skipped_unknown_expert += fresh
            return
        experience = self.experience(item)
        if fresh:
            self.exploration.add(item, experience.expert)
            avg = self.reward_avg.get(o.strategy, experience.reward)
            self.reward_avg[o.strategy] = avg + self.config.reward_ema * (experience.reward - avg)
        held_back = self.is_held_back(o.request_id)
        for t in trainees:
            if item.cursor <= t.cursor or (t.settings.train_on == "own" and o.strategy != t.name):
                continue
            t.seen += fresh
            trained = experience
            if held_back:
                t.holdback.append((experience, o))
                if len(t.holdback) <= self.config.holdback_size:
                    continue
                trained, _ = t.holdback.popleft()  # aged out of the evaluation slice: train on it now
            t.replay.append(trained)
            if fresh:
                t.new.append(trained)

    def experience(self, item: LoggedExperience) -> Experience:
        """The Experience of one logged pair, rewarded with training/rewards.py under the request's weights."""
        return to_experience(item, self.catalog.index(item.outcome.expert), self.profile, self.config.reward)

    def is_held_back(self, request_id: str) -> bool:
        """Deterministic by request id, so a restarted learner holds back the same experiences."""
        if self.config.holdback_fraction <= 0:
            return False
        h = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "big")
        return h / 2**64 < self.config.holdback_fraction

    # --- publishing -----------------------------------------------------------------------------------
    def _publish_due(self, t: _Trainee) -> bool:
        if t.updates_since_publish >= self.config.publish_every_updates:
            return True
        every = self.config.publish_every_s
        return every is not None and t.updates_since_publish > 0 and self.clock() - t.last_publish_t >= every

    def publish(self, name: str) -> dict[str, Any]:
        """Try to publish the trained weights of `name` as a new version; returns the decision and why."""
        t = self.trainees[name]
        t.updates_since_publish = 0
        t.last_publish_t = self.clock()
        bad = non_finite_weights(t.strategy.state_dict())
        if bad:
            # Training diverged: never publish, and restart training from the live weights.
            t.strategy.load_state_dict(copy.deepcopy(t.live.state_dict()), version=t.strategy.policy_version)
            return self._refuse(t, "non_finite", f"non-finite values in {bad[:3]}")
        estimate = self.evaluate(t)
        t.last_estimate = estimate
        if below_margin(estimate, self.config.publish_margin):
            return self._refuse(
                t,
                "margin",
                f"held-back advantage {estimate['difference']:.4f}, upper bound {estimate['upper_bound']:.4f} "
                f"< -margin (candidate {estimate['candidate']:.4f}, live {estimate['live']:.4f})",
            )
        t.unchecked_publishes += not estimate["checked"]
        version = self._save_version(t, metrics={"estimate": estimate, **t.last_metrics})
        return {"published": version, "estimate": estimate}

    def _refuse(self, t: _Trainee, kind: str, why: str) -> dict[str, Any]:
        t.refused[kind] = t.refused.get(kind, 0) + 1
        t.last_refusal = why
        return {"published": None, "refused": kind, "why": why}

    def evaluate(self, t: _Trainee) -> dict[str, Any]:
        """Estimates (publish_estimator: DR or SNIPS) of the candidate's and the live policy's greedy rewards on the
        held-back slice, and the bootstrap confidence bound of their difference."""
        c, n = self.config, len(self.catalog)
        bounds = {"confidence": c.publish_confidence, "seed": c.seed + t.publishes, "estimator": c.publish_estimator}
        return snips_estimates(t.strategy, t.live, t.holdback, n, c.min_propensity, c.min_holdback_matches, **bounds)

    def _save_version(self, t: _Trainee, metrics: dict[str, Any]) -> int:
        version = self.versions.next_version(t.name)
        t.strategy.policy_version = version
        t.strategy.save(
            self.versions.path(t.name, version),
            metrics={**_jsonable(metrics), "store_cursor": t.cursor, "experiences_seen": t.seen, "epsilon": t.epsilon},
        )
        history = self.versions.record_publish(t.name, version)
        if self.versions.pinned(t.name) is None:  # a rolled-back strategy keeps its pinned version live
            self._set_live(t, version)
        t.publishes += 1
        self.versions.prune(t.name, history, self.config.keep_versions)
        return version

    def rollback(self, name: str) -> int:
        """Make the version live before the current one live again (a new pointer; nothing is overwritten)."""
        t = self._trainee(name)
        version = self.versions.roll_back(name)
        t.strategy.load(self.versions.path(name, version))
        self._set_live(t, version)
        t.updates_since_publish = 0
        return version

    def _set_live(self, t: _Trainee, version: int) -> None:
        """Copy the trained weights into the live copy and take the snapshot replicas pull."""
        t.live.load_state_dict(copy.deepcopy(t.strategy.state_dict()), version=version)
        t.strategy.policy_version = version
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in t.live.state_dict().items()}
        t.snapshot = (version, arrays, {"epsilon": t.epsilon} if t.explores else {})
        t.published_at[version] = self.clock()

    # --- serving side ---------------------------------------------------------------------------------
    def get_policy(self, name: str) -> tuple[int, dict[str, np.ndarray]]:
        """The live version of `name` and its weights as numpy arrays (what router replicas load)."""
        version, arrays, _ = self._snapshot(name)
        return version, arrays

    def routing_settings(self, name: str) -> dict[str, float]:
        """Routing-time settings published with the live version: {"epsilon": exploration rate}."""
        return dict(self._snapshot(name)[2])

    def live_versions(self) -> dict[str, int]:
        return {n: t.snapshot[0] for n, t in self.trainees.items() if t.snapshot}

    def ack(self, replica_id: str, name: str, version: int, at: float | None = None) -> None:
        """A router replica now serves `version` of `name` (used to time how long a publish takes to spread)."""
        self.acks.setdefault(name, {})[replica_id] = (int(version), self.clock() if at is None else float(at))

    def propagation(self, name: str) -> dict[str, Any]:
        """How far the live version of `name` has spread: replicas that acked it, and seconds to reach all."""
        t = self._trainee(name)
        if not t.snapshot:
            return {}
        version = t.snapshot[0]
        acks = self.acks.get(name, {})
        on_live = [at for v, at in acks.values() if v == version]
        reached_all = bool(acks) and len(on_live) == len(acks)
        published = t.published_at.get(version)
        return {
            "version": version,
            "replicas": len(acks),
            "on_live": len(on_live),
            "seconds_to_all": max(on_live) - published if reached_all and published is not None else None,
        }

    def status(self) -> dict[str, Any]:
        """What an operator wants to see: versions, training progress, guardrail decisions, traffic."""
        strategies = {}
        for name, t in self.trainees.items():
            strategies[name] = {
                "start": t.start,
                "live_version": t.snapshot[0] if t.snapshot else None,
                "updates": t.updates,
                "publishes": t.publishes,
                "unchecked_publishes": t.unchecked_publishes,
                "refused_publishes": dict(t.refused),
                "last_refusal": t.last_refusal,
                "epsilon": t.snapshot[2].get("epsilon") if t.snapshot else None,
                "exploration": self.exploration.figures(name),
                "last_loss": t.last_metrics.get("loss"),
                "last_metrics": dict(t.last_metrics),
                "last_estimate": dict(t.last_estimate),
                "replay_size": len(t.replay),
                "holdback_size": len(t.holdback),
                "experiences_seen": t.seen,
                "propagation": self.propagation(name),
            }
        return {
            "cursor": self.cursor,
            "store": self.store.counts(),
            "strategies": strategies,
            "reward_moving_average": dict(self.reward_avg),
            "traffic": self.store.traffic(),
            "skipped_unknown_expert": self.skipped_unknown_expert,
        }

    # --- start and resume -----------------------------------------------------------------------------
    def _build(self, name: str, settings: StrategyTraining) -> _Trainee:
        cls = get_strategy_class(name)
        if not cls.learnable:
            raise ValueError(f"strategy {name!r} does not learn online. Learnable: rl, moe")
        make = lambda: cls(self.catalog, cls.Config(**settings.config))  # noqa: E731
        replay = ReplayPool(self.config.replay_capacity, self.config.replay, self.profile)
        return _Trainee(name=name, settings=settings, strategy=make(), live=make(), replay=replay)

    def _resume(self) -> None:
        """Load each strategy's live version (or its warm start) and refill replay from the store. A live version
        that started from another warm start than the config's refuses to resume (WarmStartChangedError)."""
        for name, t in self.trainees.items():
            live = self.versions.read_live(name)
            if live is not None:
                self._check_origin(t, live["version"])
                meta = t.strategy.load(self.versions.path(name, live["version"]))
                t.cursor = int(meta.get("metrics", {}).get("store_cursor", 0))
                t.seen = int(meta.get("metrics", {}).get("experiences_seen", 0))
                t.publishes = len(live["history"])
                self._set_live(t, live["version"])
                self._refill(t)
                t.start = f"resumed v{live['version']}"
            else:
                if t.settings.warm_start:
                    t.strategy.load(t.settings.warm_start)
                    t.start = f"warm from {t.settings.warm_start}"
                else:
                    logger.warning("strategy %s: no checkpoint and no warm start, serving an untrained network", name)
                self._save_version(t, metrics={"initial": "warm" if t.settings.warm_start else "cold"})
                self.versions.record_origin(name, self._origin(t))
        self.cursor = min((t.cursor for t in self.trainees.values()), default=0)

    def _origin(self, t: _Trainee) -> dict[str, Any]:
        warm = t.settings.warm_start
        return {"warm_start": warm, "digest": checkpoint_digest(warm) if warm else None}

    def _check_origin(self, t: _Trainee, live_version: int) -> None:
        """Resuming serves the live version and never reads the warm start again, so a changed warm start (another
        path, or new contents at the same path: `routerllm rate` rerun) would be ignored in silence: refuse."""
        started, now = self.versions.origin(t.name), self._origin(t)
        if started is None:  # LIVE.json from before origins were kept: record today's, nothing to compare
            self.versions.record_origin(t.name, now)
            return
        same_path = started.get("warm_start") == now["warm_start"]
        if same_path and (now["digest"] is None or started.get("digest") in (None, now["digest"])):
            return  # unchanged, or the file is gone (not needed to resume)
        field = f"learner.training.strategies.{t.name}.warm_start (router.strategies.{t.name}.checkpoint)"
        what = (
            f"its contents changed since (digest {started.get('digest')} -> {now['digest']})"
            if same_path
            else f"the config now gives {now['warm_start']!r}"
        )
        raise WarmStartChangedError(
            f"strategy {t.name!r}: the versions under {self.versions.root / t.name} (live v{live_version}) started "
            f"from warm start {started.get('warm_start')!r}, but {what}: {field}. Resuming would serve v{live_version} "
            f"and ignore the new checkpoint. To keep learning from v{live_version}, give the old checkpoint back; to "
            "start from the new one, point learner.training.checkpoint_dir at an empty directory (the outcome store "
            "is kept, and its experiences are learned again from the new start)."
        )

    def _refill(self, t: _Trainee) -> None:
        """Put the experiences read before the checkpoint back into replay and the held-back slice."""
        saved_cursor, t.cursor = t.cursor, 0
        capacity = self.config.replay_capacity + self.config.holdback_size
        for item in self.store.experiences_before(saved_cursor, capacity):
            self._ingest(item, [t], fresh=False)
        t.cursor = saved_cursor

    # --- lookups --------------------------------------------------------------------------------------
    def _trainee(self, name: str) -> _Trainee:
        if name not in self.trainees:
            raise KeyError(f"strategy {name!r} is not trained here. Trained strategies are {sorted(self.trainees)}")
        return self.trainees[name]

    def _snapshot(self, name: str) -> tuple:
        snap = self._trainee(name).snapshot
        if snap is None:
            raise KeyError(f"strategy {name!r} has no published version yet")
        return snap


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:  # numpy and torch scalars as floats
    return json.loads(json.dumps(metrics, default=float))


def apply_policy(
    strategy: RoutingStrategy, version: int, arrays: dict[str, np.ndarray], settings: dict[str, Any] | None = None
) -> RoutingStrategy:
    """What a router replica does with a pulled policy (the same code: router_deployments.policy_sync)."""
    return policy_copy(strategy, version, arrays, settings)
