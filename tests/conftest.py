"""Shared fixtures: the shared evaluation data, and one Ray session for every Serve test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ROUTERLLM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def routerbench_dir() -> Path:
    """../shared/data/routerbench, read in place (never copied into the project)."""
    path = SHARED_DATA / "routerbench"
    if not path.is_dir():
        pytest.fail(f"shared RouterBench data not found at {path}; set ROUTERLLM_SHARED_DATA")
    return path
