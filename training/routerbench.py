"""RouterBench-format outcome tables: per-prompt scores, costs and answers of several LLMs.

Format (see ../shared/data/README.md): `prompt` is a Python list literal of strings, one score column per model,
`<model>|model_response` and `<model>|total_cost` columns. Empty score cells count as 0 and are counted.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PRESETS: dict[str, list[str]] = {
    # The seed design's 70B / 34B / 13B / 7B shape.
    "seed4": [
        "meta/llama-2-70b-chat",
        "meta/code-llama-instruct-34b-chat",
        "WizardLM/WizardLM-13B-V1.2",
        "mistralai/mistral-7b-chat",
    ],
    "mix4": [
        "gpt-4-1106-preview",
        "zero-one-ai/Yi-34B-Chat",
        "mistralai/mixtral-8x7b-chat",
        "mistralai/mistral-7b-chat",
    ],
}


def resolve_experts(spec: str) -> list[str]:
    """A preset name or a comma-separated list of model columns."""
    if spec in PRESETS:
        return list(PRESETS[spec])
    models = [m.strip() for m in spec.split(",") if m.strip()]
    if not models:
        raise ValueError(f"Invalid experts {spec!r}. Use a preset ({sorted(PRESETS)}) or a comma list")
    return models


def csv_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.csv"))
        if not files:
            raise FileNotFoundError(f"no .csv files in {p}")
        return files
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist")
    return [p]


def prompt_text(cell: str) -> str:
    """The `prompt` cell is a list literal of strings; join its parts."""
    try:
        parts = ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return cell
    if isinstance(parts, (list, tuple)):
        return "\n".join(str(p) for p in parts)
    return str(parts)


@dataclass
class OutcomeTable:
    """Scores [N, M], costs [N, M] (USD) and answers of M models on N prompts."""

    sample_ids: list[str]
    prompts: list[str]
    tasks: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray
    responses: list[list[str]] = field(repr=False, default_factory=list)
    missing_scores: int = 0

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx) -> OutcomeTable:
        idx = np.asarray(idx, dtype=int)
        return OutcomeTable(
            sample_ids=[self.sample_ids[i] for i in idx],
            prompts=[self.prompts[i] for i in idx],
            tasks=[self.tasks[i] for i in idx],
            models=list(self.models),
            scores=self.scores[idx],
            costs=self.costs[idx],
            responses=[self.responses[i] for i in idx] if self.responses else [],
            missing_scores=self.missing_scores,
        )

    def split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[OutcomeTable, OutcomeTable]:
        """Random split stratified by task, so both halves see every task in proportion."""
        rng = np.random.default_rng(seed)
        train, test = [], []
        tasks = np.array(self.tasks)
        for task in sorted(set(self.tasks)):
            idx = np.flatnonzero(tasks == task)
            rng.shuffle(idx)
            n_test = int(round(len(idx) * test_fraction))
            test.extend(idx[:n_test])
            train.extend(idx[n_test:])
        return self.subset(sorted(train)), self.subset(sorted(test))


def load_routerbench(path: str | Path | list, models: list[str] | None = None) -> OutcomeTable:
    """Read one CSV, a directory of CSVs, or a list of either; keep `models` (all models if None)."""
    paths = path if isinstance(path, list) else [path]
    files = [f for p in paths for f in csv_files(p)]
    csv.field_size_limit(1 << 30)
    rows: list[dict[str, str]] = []
    for f in files:
        with open(f, newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"no rows in {[str(f) for f in files]}")
    header = rows[0].keys()
    available = [c for c in header if f"{c}|total_cost" in header]
    models = models or available
    unknown = [m for m in models if m not in available]
    if unknown:
        raise ValueError(f"models {unknown} are not in the data. Available models are {available}")

    def number(cell: str | None) -> float:
        return float(cell) if cell not in (None, "") else np.nan

    scores = np.array([[number(r[m]) for m in models] for r in rows], dtype=np.float64)
    costs = np.array([[number(r[f"{m}|total_cost"]) for m in models] for r in rows], dtype=np.float64)
    missing = int(np.isnan(scores).sum())
    return OutcomeTable(
        sample_ids=[r["sample_id"] for r in rows],
        prompts=[prompt_text(r["prompt"]) for r in rows],
        tasks=[r["eval_name"] for r in rows],
        models=list(models),
        scores=np.nan_to_num(scores, nan=0.0).astype(np.float32),
        costs=np.nan_to_num(costs, nan=0.0).astype(np.float32),
        responses=[[r.get(f"{m}|model_response", "") for m in models] for r in rows],
        missing_scores=missing,
    )
