"""What the torch trainers (moe, rl) set up around their training loop: torch's threads and global random
generator, scoped to the fit so the caller's are untouched, and the inner validation split that picks how long
to train."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np

from training.data.routerbench import OutcomeTable


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with n torch intra-op threads, then restore the previous setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def torch_rng() -> Iterator[None]:
    """Let the block seed torch's global generator without changing it for the caller."""
    import torch

    with torch.random.fork_rng():
        yield


def inner_split(table: OutcomeTable, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a task-stratified (train, validation) split of `table`, using OutcomeTable.split."""
    indexed = dataclasses.replace(table, sample_ids=[str(i) for i in range(len(table))])
    train, val = indexed.split(fraction, seed)
    return np.array([int(s) for s in train.sample_ids]), np.array([int(s) for s in val.sample_ids])
