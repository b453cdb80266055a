"""Shared fixtures: the shared evaluation data, and one Ray session for every Serve test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# The shipped configs keep the learner's data in $ROUTERLLM_DATA_DIR (default ~/.local/share/routerllm): tests
# build them, and must never write into a user's learnt data.
os.environ["ROUTERLLM_DATA_DIR"] = tempfile.mkdtemp(prefix="routerllm-test-data-")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ROUTERLLM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def routerbench_dir() -> Path:
    """../shared/data/routerbench, read in place (never copied into the project)."""
    path = SHARED_DATA / "routerbench"
    if not path.is_dir():
        pytest.fail(f"shared RouterBench data not found at {path}; set ROUTERLLM_SHARED_DATA")
    return path
