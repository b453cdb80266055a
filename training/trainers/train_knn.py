"""Trainer for the kNN reference router: the smallest trainer (the contract is in training/trainers/__init__.py).

`add_arguments(parser)` adds its one option; `fit_from_table(table, embeddings, catalog, k=...)` indexes the
training prompts.
"""

from __future__ import annotations

import argparse

import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments.strategies.knn import KnnConfig, KnnStrategy
from training.data.routerbench import OutcomeTable, check_aligned


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """kNN's only option: how many neighbours to average."""
    parser.add_argument("--k", type=int, default=KnnConfig().k, help="neighbours averaged per prompt")


def fit_from_table(
    table: OutcomeTable, embeddings: np.ndarray, catalog: ExpertCatalog, *, k: int = KnnConfig().k
) -> KnnStrategy:
    """Index every training prompt with its recorded scores; nothing is learned beyond the index."""
    check_aligned(table, catalog)
    return KnnStrategy(catalog, KnnConfig(k=k)).fit(embeddings, table.scores)
