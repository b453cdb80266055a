"""The trainers: one module per strategy that is fitted offline, registered by strategy name in TRAINERS.

Every trainer module exposes (see train_knn.py, the smallest):
- `add_arguments(parser)`: its options, each with a default (`routerllm train NAME --help` lists them; `bench`
  builds them from the defaults plus `--set NAME.OPTION=VALUE`);
- `fit_from_table(table, embeddings, catalog, **options) -> RoutingStrategy`: a strategy ready to route, trained
  on `table` (columns in catalog order) with `embeddings` [len(table), dim] of `table.prompts`.

Adding a trainer = one module + one line in TRAINERS. Modules are imported on first use (they import torch).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from types import ModuleType
from typing import Any

TRAINERS: dict[str, str] = {
    "knn": "training.trainers.train_knn",
    "bert": "training.trainers.train_bert",
    "moe": "training.trainers.train_moe",
    "rl": "training.trainers.train_rl",
}


def trainer_module(name: str) -> ModuleType | None:
    """The trainer module of strategy `name`, or None when that module does not exist (yet)."""
    if name not in TRAINERS:
        raise KeyError(f"Invalid trainer {name!r}. Available trainers are {sorted(TRAINERS)}")
    if importlib.util.find_spec(TRAINERS[name]) is None:
        return None
    return importlib.import_module(TRAINERS[name])


def require_trainer(name: str) -> ModuleType:
    """The trainer module of strategy `name`; ModuleNotFoundError when it is registered but not written yet."""
    module = trainer_module(name)
    if module is None:
        raise ModuleNotFoundError(f"the trainer of {name!r} ({TRAINERS[name]}) does not exist yet")
    return module


def trainer_options(module: ModuleType, overrides: list[str] | None = None) -> dict[str, Any]:
    """A trainer's options: its argparse defaults, with `--opt value` style overrides parsed by its own parser."""
    parser = argparse.ArgumentParser(prog=module.__name__, add_help=False, exit_on_error=False)
    module.add_arguments(parser)
    try:
        options, unknown = parser.parse_known_args(overrides or [])
    except argparse.ArgumentError as e:
        raise ValueError(f"{module.__name__}: {e}") from e
    if unknown:
        known = sorted(o for a in parser._actions for o in a.option_strings)
        raise ValueError(f"{module.__name__} has no option {unknown}. Its options are {known}")
    return vars(options)
