"""Version directories and the LIVE.json pointer (training/online/policy_versions.py)."""

from __future__ import annotations

import json

import pytest

from training.online.policy_versions import LIVE_FILE, PolicyVersions


def make(versions: PolicyVersions, name: str, n: int) -> list[int]:
    """Publish n versions of `name` as the learner does: a directory, then the pointer."""
    history = []
    for _ in range(n):
        version = versions.next_version(name)
        versions.path(name, version).mkdir(parents=True)
        history = versions.record_publish(name, version)
    return history


def test_publishes_number_up_and_point_live_at_the_newest(tmp_path):
    versions = PolicyVersions(tmp_path)
    assert versions.read_live("rl") is None and versions.next_version("rl") == 1
    assert make(versions, "rl", 3) == [1, 2, 3]
    live = {"version": 3, "history": [1, 2, 3], "rolled_back": [], "pinned": None, "held": []}
    assert versions.read_live("rl") == live
    assert json.loads((tmp_path / "rl" / LIVE_FILE).read_text())["version"] == 3
    assert versions.path("rl", 2) == tmp_path / "rl" / "v2"
    assert make(versions, "moe", 1) == [1]  # strategies number on their own


def test_roll_back_walks_the_history_pins_and_numbers_are_never_reused(tmp_path):
    versions = PolicyVersions(tmp_path)
    make(versions, "rl", 3)
    assert versions.roll_back("rl") == 2
    live = {"version": 2, "history": [1, 2], "rolled_back": [3], "pinned": 2, "held": []}
    assert versions.read_live("rl") == live
    assert versions.next_version("rl") == 4
    # Pinned: a publish is kept as a candidate, not made live.
    assert make(versions, "rl", 2) == [1, 2]
    assert versions.read_live("rl") == {**live, "held": [4, 5]}
    assert versions.unpin("rl") == 2 and versions.pinned("rl") is None
    assert versions.unpin("rl") is None  # nothing left to unpin
    assert versions.read_live("rl")["version"] == 2  # unpinning changes nothing live by itself ...
    assert make(versions, "rl", 1) == [1, 2, 6]  # ... the next publish goes live
    assert versions.read_live("rl")["rolled_back"] == [3] and versions.read_live("rl")["held"] == []
    assert versions.roll_back("rl") == 2 and versions.roll_back("rl") == 1 and versions.pinned("rl") == 1
    with pytest.raises(ValueError, match="no earlier published version"):
        versions.roll_back("rl")
    with pytest.raises(ValueError, match="'moe' has no earlier"):
        versions.roll_back("moe")


def test_a_pointer_written_before_pinning_reads_as_not_pinned(tmp_path):
    (tmp_path / "rl").mkdir()
    (tmp_path / "rl" / LIVE_FILE).write_text(json.dumps({"version": 2, "history": [1, 2], "rolled_back": []}))
    versions = PolicyVersions(tmp_path)
    assert versions.pinned("rl") is None and versions.unpin("rl") is None
    assert versions.record_publish("rl", 3) == [1, 2, 3]


def test_prune_keeps_the_newest_and_the_recent_history(tmp_path):
    versions = PolicyVersions(tmp_path)
    make(versions, "rl", 5)
    versions.roll_back("rl")
    versions.roll_back("rl")  # live: v3; v4 and v5 rolled back
    versions.prune("rl", versions.read_live("rl")["history"], keep=2)
    assert sorted(p.name for p in (tmp_path / "rl").glob("v*")) == ["v2", "v3", "v4", "v5"]
    versions.roll_back("rl")  # live and pinned: v2
    versions.prune("rl", [5], keep=1)  # the pinned version is kept whatever the history says
    assert sorted(p.name for p in (tmp_path / "rl").glob("v*")) == ["v2", "v5"]
    versions.prune("rl", [5], keep=None)  # None keeps everything
    assert len(list((tmp_path / "rl").glob("v*"))) == 2
