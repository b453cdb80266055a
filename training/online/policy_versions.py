"""The published policy versions of each strategy, on disk.

Versions are directories <root>/<strategy>/v<N>/ (a strategy checkpoint: weights.safetensors + meta.json) that
are never overwritten; `LIVE.json` beside them names the live one and keeps the history that a rollback walks
back, with the versions rolled back from. Numbers only grow, so a rolled-back version is never reused. Pruning
keeps the newest N directories and the newest N of the history.

A rollback pins the version it rolls back to (`pinned`): later publishes are kept as candidates (`held`, their
directories written as usual) but do not become live until an admin unpins; the next publish after that does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

LIVE_FILE = "LIVE.json"


class PolicyVersions:
    """Version directories and the LIVE.json pointer of every strategy under one root."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, name: str, version: int) -> Path:
        """The directory of version `version` of strategy `name`."""
        return self.root / name / f"v{version}"

    def next_version(self, name: str) -> int:
        """One more than the highest version directory of `name` (1 for the first)."""
        return max(self._versions(name), default=0) + 1

    def read_live(self, name: str) -> dict[str, Any] | None:
        """LIVE.json of `name`: {"version", "history", "rolled_back", "pinned", "held"}, or None before the first
        publish (files written before pinning existed lack the last two: not pinned)."""
        path = self.root / name / LIVE_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def origin(self, name: str) -> dict[str, Any] | None:
        """What version 1 of `name` started from ({"warm_start": path or None, "digest": checkpoint_digest}), or
        None where LIVE.json predates this record."""
        return (self.read_live(name) or {}).get("origin")

    def record_origin(self, name: str, origin: dict[str, Any]) -> None:
        """Keep in LIVE.json what the versions of `name` started from; later publishes and rollbacks keep it."""
        self._write_live(name, {**(self.read_live(name) or {"history": [], "rolled_back": []}), "origin": origin})

    def pinned(self, name: str) -> int | None:
        """The version a rollback pinned live, or None."""
        return (self.read_live(name) or {}).get("pinned")

    def record_publish(self, name: str, version: int) -> list[int]:
        """Make `version` live, appended to the history, unless a version is pinned: then it is only held as a
        candidate. Returns the history."""
        live = self.read_live(name) or {"history": [], "rolled_back": []}
        if live.get("pinned") is not None:
            self._write_live(name, {**live, "held": [*live.get("held", []), version]})
            return live["history"]
        history = [*live["history"], version]
        self._write_live(name, {**live, "version": version, "history": history, "pinned": None, "held": []})
        return history

    def roll_back(self, name: str) -> int:
        """Make the version before the live one live again and pin it (a new pointer; nothing is overwritten);
        returns it."""
        live = self.read_live(name)
        if not live or len(live["history"]) < 2:
            raise ValueError(f"strategy {name!r} has no earlier published version to roll back to")
        history = live["history"][:-1]
        rolled_back = [*live.get("rolled_back", []), live["version"]]
        version = history[-1]
        pointer = {"version": version, "history": history, "rolled_back": rolled_back, "pinned": version}
        self._write_live(name, {**live, **pointer})
        return version

    def unpin(self, name: str) -> int | None:
        """Let publishes go live again (the next one does); returns the version that was pinned (None: none was)."""
        live = self.read_live(name)
        if not live or live.get("pinned") is None:
            return None
        self._write_live(name, {**live, "pinned": None})
        return live["pinned"]

    def prune(self, name: str, history: list[int], keep: int | None) -> None:
        """Delete version directories of `name` but the newest `keep`, the last `keep` of `history` and the pinned
        version."""
        if keep is None:
            return
        versions = sorted(self._versions(name))
        protected = set(versions[-keep:]) | set(history[-keep:]) | {self.pinned(name)}
        for v in versions:
            if v not in protected:
                shutil.rmtree(self.path(name, v), ignore_errors=True)

    def _versions(self, name: str) -> list[int]:
        folder = self.root / name
        return [int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit()] if folder.is_dir() else []

    def _write_live(self, name: str, live: dict[str, Any]) -> None:
        """Write LIVE.json atomically (a reader sees the old pointer or the new one, never half of one)."""
        path = self.root / name / LIVE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(live))
        tmp.replace(path)
