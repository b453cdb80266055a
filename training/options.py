"""Command-line options shared by the `routerllm` commands and the trainers.

- `parse_dotted`: the one reader of `NAME.OPTION=VALUE` arguments (`--set knn.k=20`, `--trainer rl.tau=0.05`,
  `--learner batch_size=32`); each NAME's options come back as command-line flags, which a trainer's own parser
  reads, and `flag_values` turns them into config fields where a config (pydantic) validates them instead.
- `add_dataclass_arguments`: one flag per field of a trainer's `Args` dataclass (the help, choices and default
  come from the field), so `routerllm train moe --help` lists exactly what `Args` holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any


def parse_dotted(pairs: list[str], flag: str = "--set") -> dict[str, list[str]]:
    """`["knn.k=20", "rl.tau=0.05"]` -> `{"knn": ["--k", "20"], "rl": ["--tau", "0.05"]}`, in the order given.

    Option names keep their spelling (dashes or underscores, as the trainer defines them); `flag` names the
    command-line option in the error message."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name, dot, option = key.partition(".")
        if not (sep and dot and name and option):
            raise ValueError(f"Invalid {flag} {pair!r}: expected NAME.OPTION=VALUE, e.g. knn.k=20")
        out.setdefault(name, []).extend([f"--{option}", value])
    return out


def flag_values(flags: list[str]) -> dict[str, Any]:
    """`["--k", "20", "--model", "./clf"]` -> `{"k": 20, "model": "./clf"}`: flags (as parse_dotted gives them)
    as config fields. Names take underscores; values are JSON where they parse (numbers, booleans, lists,
    objects), else plain strings; a later flag overrides an earlier one."""
    return {flag.lstrip("-").replace("-", "_"): _json_or_text(value) for flag, value in zip(flags[::2], flags[1::2])}


def dotted_values(pairs: list[str], flag: str = "--set") -> dict[str, dict[str, Any]]:
    """`["rl.tau=0.05"]` -> `{"rl": {"tau": 0.05}}`: parse_dotted, then flag_values per NAME."""
    return {name: flag_values(flags) for name, flags in parse_dotted(pairs, flag).items()}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, args_cls: type) -> None:
    """One option per field of a trainer's Args dataclass: `--max-length` (or `--max_length`) for `max_length`,
    dest = the field name, default = the field default. A bool field is a `--x/--no-x` switch; `choices` and
    `help` come from the field's metadata. Fields are typed int, float, str or bool."""
    for f in dataclasses.fields(args_cls):
        names = dict.fromkeys([f"--{f.name.replace('_', '-')}", f"--{f.name}"])
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        type_name = f.type if isinstance(f.type, str) else f.type.__name__
        if type_name == "bool":
            parser.add_argument(
                *names, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
            )
            continue
        if type_name not in _TYPES:
            raise TypeError(f"{args_cls.__name__}.{f.name}: a flag needs an int, float, str or bool, not {type_name}")
        parser.add_argument(
            *names,
            dest=f.name,
            type=_TYPES[type_name],
            default=f.default,
            choices=f.metadata.get("choices"),
            help=help_text,
        )
