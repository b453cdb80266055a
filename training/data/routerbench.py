"""RouterBench-format outcome tables: per-prompt scores, costs and answers of several LLMs.

Format (see ../shared/data/README.md): `prompt` is a Python list literal of strings, one score column per model,
`<model>|model_response` and `<model>|total_cost` columns. Empty score cells count as 0 and are counted.
"""

from __future__ import annotations

import ast
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experts.catalog import ExpertCatalog, ExpertSpec, ReplayBackendConfig
from router_deployments.objectives import TYPICAL_TOKENS_IN, TYPICAL_TOKENS_OUT

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

    def split_rows(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of a random split stratified by task, so both halves see every task in proportion."""
        rng = np.random.default_rng(seed)
        train, test = [], []
        tasks = np.array(self.tasks)
        for task in sorted(set(self.tasks)):
            idx = np.flatnonzero(tasks == task)
            rng.shuffle(idx)
            n_test = int(round(len(idx) * test_fraction))
            test.extend(idx[:n_test])
            train.extend(idx[n_test:])
        return np.array(sorted(train), dtype=int), np.array(sorted(test), dtype=int)

    def split(self, test_fraction: float = 0.3, seed: int = 0) -> tuple[OutcomeTable, OutcomeTable]:
        """The tables of split_rows."""
        train, test = self.split_rows(test_fraction, seed)
        return self.subset(train), self.subset(test)


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


def response_text(cell: str) -> str:
    """The `<model>|model_response` cell is a list literal of strings (one answer); join its parts."""
    return prompt_text(cell)


# Parameter counts in billions, for energy estimates. Open models: published sizes (Mixtral 8x7B has 46.7B in
# total, 12.9B active per token; we count all of them, as its memory and serving cost do). Closed models have no
# published size: the figures below are documented guesses, used only to rank carbon, never quality or price.
KNOWN_PARAMS_B: dict[str, float] = {
    "meta/llama-2-70b-chat": 70.0,
    "meta/code-llama-instruct-34b-chat": 34.0,
    "zero-one-ai/Yi-34B-Chat": 34.0,
    "WizardLM/WizardLM-13B-V1.2": 13.0,
    "mistralai/mistral-7b-chat": 7.0,
    "mistralai/mixtral-8x7b-chat": 46.7,
    # Guess: widely reported (never confirmed) as a ~1.8T-parameter mixture of experts.
    "gpt-4-1106-preview": 1800.0,
    # Guess: the 175B GPT-3 family it descends from.
    "gpt-3.5-turbo-1106": 175.0,
    # Guesses: Anthropic publishes no sizes; placed next to the GPT models of similar price.
    "claude-v1": 175.0,
    "claude-v2": 175.0,
    "claude-instant-v1": 20.0,
}
# Joules per processed token per billion parameters: ~3-4 J/token measured for LLaMA-65B on A100/V100
# (Samsi et al. 2023, "From Words to Watts"), i.e. ~0.05 J per token per billion parameters.
ENERGY_J_PER_TOKEN_PER_B = 0.05


def model_params_b(model: str) -> float:
    """Parameter count in billions: the table above, else a size written in the name ("13B", "8x7b")."""
    if model in KNOWN_PARAMS_B:
        return KNOWN_PARAMS_B[model]
    found = re.search(r"(?:(\d+)x)?(\d+(?:\.\d+)?)b(?![a-z])", model.lower())
    if not found:
        raise ValueError(
            f"Unknown size of model {model!r}: add it to KNOWN_PARAMS_B. Known models are {sorted(KNOWN_PARAMS_B)}"
        )
    return float(found.group(1) or 1) * float(found.group(2))


def expert_names(models: list[str]) -> list[str]:
    """Catalog names for model columns: the part after the last '/', or the whole name when that collides."""
    short = [re.sub(r"[^A-Za-z0-9_.-]", "-", m.rsplit("/", 1)[-1]) for m in models]
    if len(set(short)) == len(short):
        return short
    return [re.sub(r"[^A-Za-z0-9_.-]", "-", m.replace("/", "--")) for m in models]


def catalog_from_table(table: OutcomeTable, models: list[str] | None = None, *, data: str | Path = "") -> ExpertCatalog:
    """A catalog of replay experts, one per model column, priced and rated from the (training) table.

    Experts keep the order of `models` (default: the table's), so strategy output i is column i. Prices: RouterBench
    records only a call's total cost, so input and output tokens get the same price, chosen so that the typical
    call of ExpertProfile (200 in + 200 out tokens) costs the model's mean recorded cost on `table`. Pass the
    training table, never the evaluation one. `data` is where a replay backend finds the recorded answers.
    """
    models = list(models or table.models)
    missing = [m for m in models if m not in table.models]
    if missing:
        raise ValueError(f"models {missing} are not in the table. Available models are {table.models}")
    typical_k_tokens = (TYPICAL_TOKENS_IN + TYPICAL_TOKENS_OUT) / 1000.0
    experts = []
    for name, model in zip(expert_names(models), models):
        col = table.models.index(model)
        params_b = model_params_b(model)
        price = float(table.costs[:, col].mean()) / typical_k_tokens
        experts.append(
            ExpertSpec(
                name=name,
                backend=ReplayBackendConfig(data=str(data), model=model),
                params_b=params_b,
                price_in_per_1k=price,
                price_out_per_1k=price,
                energy_per_token_j=ENERGY_J_PER_TOKEN_PER_B * params_b,
                # Not recorded by RouterBench; a size-based guess so latency-weighted routing has an order.
                expected_latency_s=1.0 + params_b / 100.0,
                quality_prior=float(np.clip(table.scores[:, col].mean(), 0.0, 1.0)),
            )
        )
    return ExpertCatalog(experts=experts)


def catalog_models(catalog: ExpertCatalog) -> list[str]:
    """The model column each expert replays (its name when its backend is not a replay)."""
    return [e.backend.model if e.backend.kind == "replay" else e.name for e in catalog.experts]


def check_aligned(table: OutcomeTable, catalog: ExpertCatalog) -> None:
    """Raise unless the table's columns are the catalog's experts in catalog order (what trainers rely on)."""
    if table.models != catalog_models(catalog):
        raise ValueError(
            f"table columns {table.models} do not match the catalog's experts {catalog_models(catalog)}; "
            "load the table with models=catalog_models(catalog)"
        )
