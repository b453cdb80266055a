"""The learner as a Ray actor: one named, detached actor that records feedback and trains in the background.

`get_or_create_learner(config, catalog)` returns the actor "routerllm-learner" (namespace configurable), creating
it if needed with max_restarts=-1 and max_task_retries=-1: Ray restarts it when it dies and retries the calls
that were in flight. A restart runs __init__ again, and OnlineLearner resumes from the live checkpoints and the
store's cursor, so nothing acknowledged is lost. Recording an outcome is idempotent by request id, so a retried
call records nothing twice; a retried feedback whose first attempt had committed answers DuplicateFeedbackError
(the stored score is the one sent).

Serving must not wait for training: record_* only append to the store (one committed SQLite transaction each),
while a background thread runs `OnlineLearner.step()` whenever new feedback has arrived. The actor runs calls on
a few threads (max_concurrency), so a status() or get_policy() never queues behind a slow write.

Metrics (ray.util.metrics, exported by Ray's Prometheus endpoint), tagged by strategy or expert:
    routerllm_learner_policy_version, _epsilon, _explored_share, _loss, _replay_size, _publishes, _refused_publishes,
    _reward_moving_average, _updates, _requests (per expert), _cost_usd_per_request, _carbon_g_per_request,
    _feedback_total, _outcomes_total, _publish_propagation_s (time for a publish to reach every replica).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from experts.catalog import ExpertCatalog
from training.online.learner import LearnerConfig, OnlineLearner
from training.online.outcome_store import OutcomeRecord

logger = logging.getLogger(__name__)

LEARNER_NAME = "routerllm-learner"
DEFAULT_NAMESPACE = "routerllm"


class LearnerMetrics:
    """Ray custom metrics of the learner; a failure to export never reaches a caller (logged once)."""

    def __init__(self) -> None:
        from ray.util.metrics import Counter, Gauge

        def gauge(name: str, doc: str, tag: str = "strategy") -> Gauge:
            return Gauge(f"routerllm_learner_{name}", description=doc, tag_keys=(tag,))

        self.gauges = {
            "live_version": gauge("policy_version", "Live (published) policy version."),
            "epsilon": gauge("epsilon", "Exploration rate published with the live version."),
            "explored_share": gauge("explored_share", "Share of logged answers not the router's most probable."),
            "last_loss": gauge("loss", "Loss of the last learn() call."),
            "replay_size": gauge("replay_size", "Experiences in the replay pool."),
            "publishes": gauge("publishes", "Versions published since start."),
            "refused": gauge("refused_publishes", "Publishes refused by a guardrail since start."),
            "updates": gauge("updates", "learn() calls since start."),
            "reward": gauge("reward_moving_average", "Moving average of the reward of logged requests."),
            "propagation": gauge("publish_propagation_s", "Seconds for the live version to reach every replica."),
            "requests": gauge("requests", "Requests answered by each expert (fan-out rank 0).", tag="expert"),
        }
        self.cost = Gauge("routerllm_learner_cost_usd_per_request", description="Mean cost of a request.")
        self.carbon = Gauge("routerllm_learner_carbon_g_per_request", description="Mean gCO2eq of a request.")
        self.feedback = Counter("routerllm_learner_feedback_total", description="Feedback scores recorded.")
        self.outcomes = Counter("routerllm_learner_outcomes_total", description="Expert outcomes recorded.")
        self._warned = False

    def safely(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - metrics must never break a request or the training loop
            if not self._warned:
                logger.warning("learner metrics export failed: %r", e)
                self._warned = True

    def export(self, status: dict[str, Any]) -> None:
        self.safely(self._export, status)

    def _export(self, status: dict[str, Any]) -> None:
        for name, s in status["strategies"].items():
            tags = {"strategy": name}
            values = {
                "live_version": s["live_version"],
                "epsilon": s["epsilon"],
                "explored_share": s["exploration"]["explored_share"],
                "last_loss": s["last_loss"],
                "replay_size": s["replay_size"],
                "publishes": s["publishes"],
                "refused": sum(s["refused_publishes"].values()),
                "updates": s["updates"],
                "propagation": s["propagation"].get("seconds_to_all"),
            }
            for key, value in values.items():
                if value is not None:
                    self.gauges[key].set(float(value), tags=tags)
        for name, value in status["reward_moving_average"].items():
            self.gauges["reward"].set(float(value), tags={"strategy": name})
        traffic = status["traffic"]
        for expert, t in traffic["experts"].items():
            self.gauges["requests"].set(float(t["requests"]), tags={"expert": expert})
        self.cost.set(float(traffic["cost_usd_per_request"]))
        self.carbon.set(float(traffic["carbon_g_per_request"]))


class LearnerActor:
    """Wraps OnlineLearner; see the module docstring. Arguments are plain dicts so Ray can restart it."""

    def __init__(self, config: dict[str, Any], catalog: dict[str, Any], poll_interval_s: float = 0.05):
        import torch
        import torch._dynamo  # noqa: F401 - imported by the first optimizer; here, not while serving calls

        self._started_with = {"training": config, "catalog": catalog}  # what a later deployment is checked against
        learner_config = LearnerConfig.model_validate(config)
        if learner_config.torch_threads is not None:
            torch.set_num_threads(learner_config.torch_threads)  # this process is the actor's own
        self.learner = OnlineLearner(learner_config, ExpertCatalog.model_validate(catalog))
        self.poll_interval_s = poll_interval_s
        self.started_at = time.time()
        self.metrics = LearnerMetrics()
        self.training_errors = 0
        self.last_training_error: str | None = None
        self._lock = threading.Lock()  # one step / publish / rollback / status at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._train_loop, name="learner-train", daemon=True)
        self._thread.start()

    # --- serving path: store writes only ------------------------------------------------------------------
    def record_outcome(self, outcome: OutcomeRecord) -> bool:
        """Log one expert call; False if already logged. Anything but an OutcomeRecord is a TypeError."""
        new = self.learner.record_outcome(outcome)
        if new:
            self.metrics.safely(self.metrics.outcomes.inc, 1.0)
        return new

    def record_outcomes(self, outcomes: list[OutcomeRecord]) -> int:
        """Log every call of one fan-out in one transaction; returns how many were new."""
        new = self.learner.record_outcomes(outcomes)
        if new:
            self.metrics.safely(self.metrics.outcomes.inc, float(new))
        return new

    def record_feedback(self, request_id: str, score: float, caller: str | None = None) -> int:
        """Log `caller`'s score in [0, 1] of its own request; raises UnknownRequestError (404, also for another
        caller's id), DuplicateFeedbackError (409) or InvalidScoreError (422) from training.online.outcome_store.
        Returns the feedback's cursor."""
        cursor = self.learner.record_feedback(request_id, score, caller=caller)
        self.metrics.safely(self.metrics.feedback.inc)
        return cursor

    def started_with(self) -> dict[str, Any]:
        """The training config and catalog this actor was created with (a restart by Ray keeps them)."""
        return self._started_with

    # --- replicas -----------------------------------------------------------------------------------------
    def live_versions(self) -> dict[str, int]:
        return self.learner.live_versions()

    def get_policy(self, strategy: str, have_version: int | None = None) -> tuple[int, dict] | None:
        """(version, {tensor name: numpy array}) of the live policy, or None if `have_version` is live."""
        version, arrays = self.learner.get_policy(strategy)
        return None if version == have_version else (version, arrays)

    def routing_settings(self, strategy: str) -> dict[str, float]:
        """Routing settings published with the live version ({"epsilon": ...} for strategies that explore)."""
        return self.learner.routing_settings(strategy)

    def ack(self, replica_id: str, strategy: str, version: int, t: float | None = None) -> None:
        self.learner.ack(replica_id, strategy, version, t)

    # --- admin --------------------------------------------------------------------------------------------
    def rollback(self, strategy: str) -> int:
        """Make the previously published version live again and pin it (publishes are held as candidates until
        `unpin`); returns it."""
        with self._lock:
            return self.learner.rollback(strategy)

    def unpin(self, strategy: str) -> int | None:
        """Let `strategy`'s publishes go live again; returns the version that was pinned (None: none was)."""
        if strategy not in self.learner.trainees:
            raise KeyError(f"strategy {strategy!r} is not trained here; trained: {sorted(self.learner.trainees)}")
        with self._lock:
            return self.learner.versions.unpin(strategy)

    def status(self) -> dict[str, Any]:
        with self._lock:
            status = self.learner.status()
            for name, s in status["strategies"].items():
                live = self.learner.versions.read_live(name) or {}
                s["pinned"], s["held_versions"] = live.get("pinned"), live.get("held", [])
        status["actor"] = {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "training_errors": self.training_errors,
            "last_training_error": self.last_training_error,
            "pending_feedback": self.learner.store.last_cursor() - status["cursor"],
            "feedback_over_caller_cap": self.learner.store.over_cap(),
        }
        return status

    def wait_until_trained(self, timeout_s: float = 30.0) -> bool:
        """Block until the learner has read every feedback recorded so far (for tests and shutdown)."""
        target = self.learner.store.last_cursor()
        deadline = time.monotonic() + timeout_s
        while self.learner.cursor < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(self.poll_interval_s)
        return True

    def stop(self) -> None:
        """Stop the training thread (the actor keeps answering)."""
        self._stop.set()
        self._thread.join(timeout=30)

    # --- carbon report (read-only) -----------------------------------------------------------------------
    def carbon_summary(self, since: float | None = None, until: float | None = None) -> dict[str, Any]:
        """The store's per-expert and per-strategy figures over [since, until) (OutcomeStore.carbon_by)."""
        store = self.learner.store
        return {
            "experts": store.carbon_by("expert", since, until),
            "strategies": store.carbon_by("strategy", since, until),
        }

    def outcome_page(self, after: int = 0, limit: int = 500, since: float | None = None, until: float | None = None):
        """One page of the outcome log (OutcomeStore.outcome_page)."""
        return self.learner.store.outcome_page(after, limit, since, until)

    # --- background training ------------------------------------------------------------------------------
    def _train_loop(self) -> None:
        last_export = 0.0
        while not self._stop.is_set():
            try:
                if self.learner.store.last_cursor() <= self.learner.cursor:
                    self._stop.wait(self.poll_interval_s)
                    continue
                with self._lock:
                    self.learner.step()
                if time.monotonic() - last_export >= 1.0:
                    self.metrics.export(self.status())
                    last_export = time.monotonic()
            except Exception as e:  # noqa: BLE001 - keep serving the live policy; report and retry
                self.training_errors += 1
                self.last_training_error = repr(e)
                logger.exception("learner step failed (will retry)")
                self._stop.wait(min(30.0, self.poll_interval_s * 2 ** min(self.training_errors, 10)))


def get_or_create_learner(
    config: LearnerConfig,
    catalog: ExpertCatalog,
    namespace: str = DEFAULT_NAMESPACE,
    name: str = LEARNER_NAME,
    num_cpus: float = 0.5,
    poll_interval_s: float = 0.05,
    node_ip: str | None = None,
):
    """The named, detached learner actor; created on first call (Ray must be initialised). With `node_ip` it is
    placed, and restarted, only on that node (its `node:<ip>` resource): where its SQLite store and checkpoints
    are. Without it Ray may restart it on any node, which is right only for a data_dir every node shares."""
    import ray

    actor_cls = ray.remote(LearnerActor)
    placement = {"resources": {f"node:{node_ip}": 0.001}} if node_ip else {}
    return actor_cls.options(
        **placement,
        name=name,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        max_concurrency=4,
        num_cpus=num_cpus,
    ).remote(config.model_dump(mode="json"), catalog.model_dump(mode="json"), poll_interval_s)


class LearnerConfigChangedError(RuntimeError):
    """A learner actor of this name is already running with another training config or catalog."""


def config_changes(running: Any, wanted: Any, path: str = "") -> list[str]:
    """Dotted paths where `wanted` differs from `running` (JSON-like values), each with both values."""
    if isinstance(running, dict) and isinstance(wanted, dict):
        changes = []
        for key in sorted(set(running) | set(wanted), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in running or key not in wanted:
                changes.append(
                    f"{where}: running {running.get(key, '<unset>')!r}, wanted {wanted.get(key, '<unset>')!r}"
                )
            else:
                changes.extend(config_changes(running[key], wanted[key], where))
        return changes
    return [] if running == wanted else [f"{path}: running {running!r}, wanted {wanted!r}"]


def check_running_config(
    running: dict[str, Any], config: LearnerConfig, catalog: ExpertCatalog, name: str, namespace: str
) -> None:
    """Refuse, naming every changed field, to serve with a learner that runs another config: a detached actor keeps
    the arguments it was created with, so a redeployed graph would otherwise train with the old ones in silence."""
    wanted = {"training": config.model_dump(mode="json"), "catalog": catalog.model_dump(mode="json")}
    changes = config_changes(running, wanted)
    if changes:
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise LearnerConfigChangedError(
            f"the learner actor {name!r} (namespace {namespace!r}) is already running with another config: {shown}. "
            'A running learner keeps the config it started with. Stop it (python -c "import ray; '
            f"ray.init(address='auto', namespace='{namespace}'); ray.kill(ray.get_actor('{name}'))\") and deploy "
            "again: it resumes from its checkpoints and store. Or give this graph another learner.actor_name."
        )
