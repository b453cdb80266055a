"""Self-describing checkpoints: safetensors weights plus a JSON of architecture, experts and metrics.

A checkpoint is a directory holding `weights.safetensors` and `meta.json`. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "weights.safetensors"
META_FILE = "meta.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match the strategy or expert list it is loaded into."""


def save_checkpoint(path: str | Path, tensors: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write tensors (torch) and meta (JSON-serialisable) to directory `path`, atomically per file."""
    import torch
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    for name, t in contiguous.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"refusing to save non-finite values in tensor {name!r}")
    tmp_w, tmp_m = out / (WEIGHTS_FILE + ".tmp"), out / (META_FILE + ".tmp")
    save_file(contiguous, str(tmp_w))
    tmp_m.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp_w.replace(out / WEIGHTS_FILE)
    tmp_m.replace(out / META_FILE)
    return out


def load_checkpoint(
    path: str | Path,
    *,
    strategy: str | None = None,
    experts: list[str] | None = None,
    columns: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint and check it was written for `strategy` over exactly these experts, in order: the same
    outcome-table `columns` (meta's "columns", recorded since trained_as exists) or the same names `experts`
    (the only check for older checkpoints, which recorded names alone)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {root} does not exist")
    for name in (WEIGHTS_FILE, META_FILE):
        if not (root / name).is_file():
            raise CheckpointError(f"checkpoint {root} is missing {name}")
    try:
        meta = json.loads((root / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {root}: {META_FILE} is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {root}: {META_FILE} must hold a JSON object")
    try:
        tensors = load_file(str(root / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {root}: {WEIGHTS_FILE} is corrupt ({e})") from e
    if strategy is not None and meta.get("strategy") != strategy:
        raise CheckpointError(f"checkpoint {root} was written by strategy {meta.get('strategy')!r}, not {strategy!r}")
    if experts is not None and not experts_match(meta, experts, columns):
        raise CheckpointError(
            f"checkpoint {root} routes over experts {meta.get('experts')} (table columns {meta.get('columns')}), "
            f"but this router has experts {list(experts)} (columns {list(columns or experts)}); "
            "set `trained_as: <column>` on each expert of the config to serve it under other names"
        )
    return tensors, meta


def checkpoint_digest(path: str | Path) -> str | None:
    """A short SHA-256 of a checkpoint's weights and meta (None when either file is missing): tells apart two
    checkpoints written to the same directory, e.g. a `routerllm rate` rerun with more data."""
    root = Path(path)
    files = [root / WEIGHTS_FILE, root / META_FILE]
    if not all(f.is_file() for f in files):
        return None
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def experts_match(meta: dict[str, Any], experts: list[str], columns: list[str] | None = None) -> bool:
    """Whether a checkpoint's experts are these, in this order: by table column when both sides know them,
    else by name."""
    if meta.get("experts") == list(experts):
        return True
    return columns is not None and meta.get("columns") == list(columns)


def field_diff(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    """ "field: checkpoint X, router Y; ..." for every field where a checkpoint's record and a router's differ."""
    absent = "(absent)"
    return "; ".join(
        f"{f}: checkpoint {theirs.get(f, absent)!r}, router {ours.get(f, absent)!r}"
        for f in sorted(set(theirs) | set(ours))
        if theirs.get(f, absent) != ours.get(f, absent)
    )
