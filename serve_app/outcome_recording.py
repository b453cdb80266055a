"""Outcome recording: every answered expert call becomes an OutcomeRecord in the learner's durable store before
the client is answered, and the ingress's other calls to the learner actor (feedback, rollback, status) go
through here with the same timeout.

A learner that is slow or gone never fails an answer: the response then says `"feedback": "unavailable: ..."`
and feedback for that request will be refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray

from experts.catalog import ExpertCatalog
from serve_app.config import AppConfig, LearnerSettings
from serve_app.errors import APIError, short_error
from serve_app.routed_request import ExpertAnswer, RoutedRequest
from training.online.learner_actor import check_running_config, get_or_create_learner
from training.online.outcome_store import OutcomeRecord, outcome_id

logger = logging.getLogger("routerllm.ingress")

ACCEPTED = "accepted"
FEEDBACK_UNSURE = (
    "this feedback may or may not be recorded: the learner may still carry out the call once it is back. Send it "
    "again: 200 means it is recorded now, 409 duplicate_feedback that it was recorded before"
)
ROLLBACK_UNSURE = "the rollback may or may not happen once the learner is back: check /v1/learner/status"


class LearnerNotReadyError(RuntimeError):
    """The learner actor did not answer at start: it could not be placed, or it failed to start."""


def placement_report(
    settings: LearnerSettings, reserved: dict[str, float], resources: dict[str, float], available: dict[str, float]
) -> str:
    """What the learner asked for against what the cluster has, and what the graph reserves (AppConfig's
    cpu_reservations)."""
    parts = ", ".join(f"{name} {cpus:g}" for name, cpus in reserved.items())
    return (
        f"the learner actor {settings.actor_name!r} asked for num_cpus={settings.num_cpus:g} and did not answer "
        f"within {settings.ready_timeout_s:g} s; the cluster has {resources.get('CPU', 0.0):g} CPUs, "
        f"{available.get('CPU', 0.0):g} free now. This graph reserves {sum(reserved.values()):g} CPUs ({parts}): "
        "lower learner.num_cpus or the deployments' num_cpus so that they fit"
    )


def outcome_records(routed: RoutedRequest, answers: list[ExpertAnswer]) -> list[OutcomeRecord]:
    """One validated record per answered expert, the one returned to the client first."""
    decision = routed.decision
    return [
        OutcomeRecord(
            request_id=outcome_id(routed.request_id, a.expert, rank),
            group_id=routed.request_id,
            fanout_rank=rank,
            strategy=decision.strategy,
            expert=a.expert,
            embedding=routed.embedding,
            policy_version=decision.policy_version,
            probs=decision.probs,
            carbon_budget_left=routed.carbon_budget_left,
            weights=routed.weights,
            latency_s=a.result.latency_s,
            tokens_in=a.result.tokens_in,
            tokens_out=a.result.tokens_out,
            cost_usd=a.cost_usd,
            carbon_g=a.carbon_g,
            caller=routed.caller,
        )
        for rank, a in enumerate(answers)
    ]


class OutcomeRecorder:
    """The ingress's side of online learning: the learner actor's handle (None when the config has no `learner`
    section) and every call to it, each with `record_timeout_s`."""

    def __init__(self, settings: LearnerSettings | None, catalog: ExpertCatalog):
        self.settings: LearnerSettings | None = settings
        self.catalog = catalog
        self.learner = None
        if settings is not None:
            self.learner = get_or_create_learner(
                settings.training,
                catalog,
                namespace=settings.namespace,
                name=settings.actor_name,
                num_cpus=settings.num_cpus,
                node_ip=settings.storage_node_ip if settings.pin_to_storage_node else None,
            )

    async def wait_until_ready(self, config: AppConfig) -> None:
        """Wait (at most learner.ready_timeout_s) for the learner actor to answer, so that the graph is not ready
        before its learner; LearnerNotReadyError says why not (placement, or the actor's own start error), and
        LearnerConfigChangedError names the fields when a learner of this name already runs with another config."""
        if self.learner is None:
            return
        try:
            await asyncio.wait_for(self.learner.live_versions.remote(), self.settings.ready_timeout_s)
        except asyncio.TimeoutError as e:
            reserved = config.cpu_reservations()
            report = placement_report(self.settings, reserved, ray.cluster_resources(), ray.available_resources())
            raise LearnerNotReadyError(report) from e
        except ray.exceptions.RayActorError as e:
            raise LearnerNotReadyError(f"the learner actor {self.settings.actor_name!r} failed to start: {e}") from e
        running = await self.learner.started_with.remote()
        settings = self.settings
        check_running_config(running, settings.training, self.catalog, settings.actor_name, settings.namespace)

    async def record(self, routed: RoutedRequest, answers: list[ExpertAnswer]) -> str:
        """Log every answered call (all k of a fan-out; the first is the one returned) and return the
        response's `feedback` status: 'accepted', or 'unavailable: <why>'."""
        if self.learner is None:
            return "unavailable: online learning is not enabled"
        if not routed.learnable:
            return "unavailable: direct requests are not learned"
        try:
            # Built inside the try: a record that fails validation costs the request its feedback, not its answer.
            ref = self.learner.record_outcomes.remote(outcome_records(routed, answers))
            await asyncio.wait_for(ref, self.settings.record_timeout_s)
        except Exception as e:  # noqa: BLE001 - the answer still goes out; its feedback will be refused
            logger.warning("could not record outcomes of %s: %r", routed.request_id, e)
            return f"unavailable: learner unavailable: {short_error(e)}"
        return ACCEPTED

    def require_learner(self) -> Any:
        """The learner actor's handle, or the 501 of a deployment without online learning."""
        if self.learner is None:
            raise APIError(
                501, "online learning is not enabled in this deployment (no `learner` section)", code="learner_disabled"
            )
        return self.learner

    async def ask(self, ref: Any, unsure: str = "retry") -> Any:
        """Await a learner call; a timeout or a dead (restarting) actor is a 503 whose message ends with `unsure`:
        what the caller can know of a call whose fate is unknown. Ray retries calls to a restarting learner
        (max_task_retries=-1), so a call that timed out here may still be carried out later: a 503 must never say
        that nothing happened."""
        try:
            return await asyncio.wait_for(ref, self.settings.record_timeout_s)
        except (asyncio.TimeoutError, ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as e:
            raise APIError(
                503,
                f"learner unavailable ({short_error(e)}); {unsure}",
                "server_error",
                code="learner_unavailable",
            ) from e
