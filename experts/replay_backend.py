"""Replay expert: answers a known prompt with one model's recorded RouterBench response, score and cost.

It lets the whole serving graph be evaluated offline over HTTP on outcome tables: the router picks an expert, the
expert "generates" what that model really answered, and the reply carries the recorded score and cost.

A request matches a recorded prompt by the last user message, exactly as sent, or failing that by all user
messages (then all messages) joined with newlines, the way the table's multi-part prompts are joined.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from functools import lru_cache
from typing import TYPE_CHECKING

from experts.base import ExpertBackend, ExpertError, GenerationRequest, GenerationResult
from experts.catalog import ExpertSpec

if TYPE_CHECKING:
    from training.data.routerbench import OutcomeTable

# About four characters per token for English text and code (OpenAI's rule of thumb). RouterBench records no
# token counts, and the cost it recorded is reported separately in `extra`, so an estimate is enough here.
CHARS_PER_TOKEN = 4

_load_lock = threading.Lock()


def estimate_tokens(text: str) -> int:
    """Rough token count: characters / 4, at least 1 for non-empty text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@lru_cache(maxsize=4)
def _load_table(data: str) -> tuple[OutcomeTable, dict[str, int]]:
    """All models of one table plus an index text -> row; shared by every replay expert of the process."""
    # Loaded lazily: the table format lives with the training code, and serving without replay never needs it.
    from training.data.routerbench import load_routerbench

    table = load_routerbench(data)
    return table, {text: row for row, text in enumerate(table.prompts)}


class ReplayBackend(ExpertBackend):
    """Replays the model column `backend.model` of the table at `backend.data`."""

    def __init__(self, spec: ExpertSpec):
        super().__init__(spec)
        self._table: OutcomeTable | None = None
        self._index: dict[str, int] = {}
        self._column = -1

    async def start(self) -> None:
        """Load the table once; no data or an unknown model column is an ExpertError at start."""
        if self._table is not None:
            return
        if not self.config.data:
            raise ExpertError(f"replay expert {self.spec.name!r} has no data: set backend.data to a RouterBench CSV")
        table, index = await asyncio.to_thread(self._load)
        if self.config.model not in table.models:
            raise ExpertError(
                f"replay expert {self.spec.name!r}: model {self.config.model!r} is not in {self.config.data}. "
                f"Available models are {table.models}"
            )
        self._table, self._index = table, index
        self._column = table.models.index(self.config.model)

    def _load(self) -> tuple[OutcomeTable, dict[str, int]]:
        with _load_lock:  # one load per table even when several experts start at once
            try:
                return _load_table(str(self.config.data))
            except (OSError, ValueError) as e:
                raise ExpertError(f"replay expert {self.spec.name!r} cannot read {self.config.data}: {e}") from e

    def _find_row(self, messages: list[dict[str, str]]) -> int:
        user = [m.get("content", "") for m in messages if m.get("role") == "user"]
        candidates = [user[-1]] if user else []
        candidates += ["\n".join(user), "\n".join(m.get("content", "") for m in messages)]
        for text in candidates:
            if text in self._index:
                return self._index[text]
        shown = candidates[0][:80] if candidates else ""
        raise ExpertError(
            f"replay expert {self.spec.name!r}: prompt {shown!r}... is not recorded in {self.config.data} "
            f"({len(self._index)} prompts); a replay expert only answers prompts of its table, sent verbatim",
            kind="request",
        )

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """The recorded answer, whole: max_tokens is not applied, as the recorded score belongs to all of it."""
        from training.data.routerbench import response_text

        started = time.perf_counter()
        await self.start()
        row = self._find_row(request.messages)
        table = self._table
        text = response_text(table.responses[row][self._column])
        prompt = "\n".join(m.get("content", "") for m in request.messages)
        return GenerationResult(
            text=text,
            tokens_in=estimate_tokens(prompt),
            tokens_out=estimate_tokens(text),
            latency_s=time.perf_counter() - started,
            extra={
                "score": float(table.scores[row, self._column]),
                "cost_usd": float(table.costs[row, self._column]),
                "sample_id": table.sample_ids[row],
                "task": table.tasks[row],
            },
        )
