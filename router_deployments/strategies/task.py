"""The task reference: routes by the prompt's known task, with each expert's mean recorded outcome on that task.

Offline evaluation only, like the oracle: it reads the task label of the table (RouterBench's `eval_name`), which a
served request does not carry. It answers "how far does knowing the task get you?": on RouterBench's tasks the
prompt says little about which expert answers right beyond its task, so a prompt-only router that recognises the
task and estimates each expert's mean on it already sits near this line, and beating it needs within-task signal.

Quality is an expert's mean score on the task's training prompts; cost is its mean recorded cost there, scaled by
the same constant as every strategy's cost penalty (the priciest expert's typical call), so a cost weight means
what it means elsewhere. Ties go to the cheaper expert. A task with no training prompts falls back to the mean over
all training prompts (a warning says which), so an evaluation set with a new task still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig
from router_deployments.strategies.oracle import lookup_prompt

logger = logging.getLogger(__name__)

ALL_TASKS = "*"
"""Key of the mean over every training prompt, used for tasks the reference was not fitted on."""


class TaskStrategy(RoutingStrategy):
    """Per-task mean quality and cost of every expert, looked up by the prompt's task label."""

    name = "task"

    def __init__(self, catalog: ExpertCatalog, config: StrategyConfig | None = None):
        super().__init__(catalog, config)
        self.quality: dict[str, np.ndarray] = {}
        self.cost_norm: dict[str, np.ndarray] = {}
        self._task_of: dict[str, str] = {}

    def fit(self, tasks: Sequence[str], scores: np.ndarray, costs_usd: np.ndarray) -> TaskStrategy:
        """Training prompts' task labels [N], and each expert's recorded score and cost on them [N, n_experts]."""
        scores = np.asarray(scores, dtype=np.float64)
        costs = np.asarray(costs_usd, dtype=np.float64)
        shape = (len(tasks), len(self.catalog))
        if len(tasks) == 0 or scores.shape != shape or costs.shape != shape:
            raise ValueError(f"need scores and costs of shape {shape} (N > 0), got {scores.shape} and {costs.shape}")
        labels = np.asarray(tasks)
        scale = float(self.profile.cost.max()) or 1.0
        self.quality = {t: scores[labels == t].mean(0) for t in sorted(set(tasks))}
        self.cost_norm = {t: costs[labels == t].mean(0) / scale for t in sorted(set(tasks))}
        self.quality[ALL_TASKS], self.cost_norm[ALL_TASKS] = scores.mean(0), costs.mean(0) / scale
        self.policy_version += 1
        return self

    def set_prompt_tasks(self, texts: Sequence[str], tasks: Sequence[str]) -> TaskStrategy:
        """The task label of each prompt it will be asked to route (e.g. the evaluation table's)."""
        if len(texts) != len(tasks):
            raise ValueError(f"{len(texts)} prompts but {len(tasks)} task labels")
        if not self.quality:
            raise RuntimeError("the task reference is not fitted: call fit() first")
        unknown = sorted(set(tasks) - set(self.quality))
        if unknown:
            logger.warning("tasks %s have no training prompts: routed by the mean over all tasks", unknown)
        self._task_of = {text: task if task in self.quality else ALL_TASKS for text, task in zip(texts, tasks)}
        return self

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Utility of each expert from its mean training outcome on the prompt's task."""
        if not self.quality:
            raise RuntimeError("the task reference is not fitted: call fit() first")
        out = np.empty((len(contexts), len(self.catalog)), dtype=np.float64)
        for i, ctx in enumerate(contexts):
            task = lookup_prompt(self._task_of, ctx.text, "the task reference has no task label", "set_prompt_tasks()")
            cost_norm = self.cost_norm[task]
            out[i] = self.profile.utility(self.quality[task], ctx.weights, cost_norm, break_ties=True)
        return out
