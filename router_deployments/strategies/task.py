"""The task reference: routes by the prompt's known task, with each expert's mean recorded outcome on that task.

Offline evaluation only, like the oracle: it reads the task label of the table (RouterBench's `eval_name`), which a
served request does not carry. It answers "how far does knowing the task get you?": on RouterBench's tasks the
prompt says little about which expert answers right beyond its task, so a prompt-only router that recognises the
task and estimates each expert's mean on it already sits near this line, and beating it needs within-task signal.

Quality is an expert's mean score on the task's training prompts; cost is its mean recorded cost there, scaled by
the same constant as every strategy's cost penalty (the priciest expert's typical call), so a cost weight means
what it means elsewhere. Ties go to the cheaper expert.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig
from router_deployments.strategies.oracle import UnknownPromptError

TIE_BREAK = 1e-6


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
        self.policy_version += 1
        return self

    def set_prompt_tasks(self, texts: Sequence[str], tasks: Sequence[str]) -> TaskStrategy:
        """The task label of each prompt it will be asked to route (e.g. the evaluation table's)."""
        if len(texts) != len(tasks):
            raise ValueError(f"{len(texts)} prompts but {len(tasks)} task labels")
        unknown = sorted(set(tasks) - set(self.quality))
        if unknown:
            raise ValueError(f"tasks {unknown} have no training prompts; fitted tasks are {sorted(self.quality)}")
        self._task_of = dict(zip(texts, tasks))
        return self

    def _task(self, text: str) -> str:
        try:
            return self._task_of[text]
        except KeyError:
            raise UnknownPromptError(
                f"the task reference has no task label for prompt {text[:80]!r}...; it only routes prompts "
                "given to set_prompt_tasks()"
            ) from None

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        if not self.quality:
            raise RuntimeError("the task reference is not fitted: call fit() first")
        out = np.empty((len(contexts), len(self.catalog)), dtype=np.float64)
        for i, ctx in enumerate(contexts):
            task = self._task(ctx.text)
            utility = self.profile.utility(self.quality[task], ctx.weights)
            # Swap the typical call's cost penalty for the task's mean recorded one.
            utility = utility + ctx.weights.cost * (self.profile.cost_norm - self.cost_norm[task])
            out[i] = utility - TIE_BREAK * self.cost_norm[task]
        return out
