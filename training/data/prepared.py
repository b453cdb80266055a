"""The data every benchmark starts from: RouterBench tables, a training part and a held-out part, their prompt
embeddings and the expert catalog built from the training rows.

`routerllm bench` and `routerllm bench-online` both call `prepare` (and `routerllm train` calls `embed`), so the
same arguments give the same prompts, split and embeddings in every command. Tests replace `embed` (one function,
through the on-disk cache of training/data/embedding_cache.py) to run without the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experts.catalog import ExpertCatalog
from training.data.routerbench import OutcomeTable, catalog_from_table, load_routerbench, resolve_experts


@dataclass
class PreparedData:
    """A training table and a held-out table (same experts, in catalog order), with their prompt embeddings."""

    train: OutcomeTable
    held_out: OutcomeTable
    train_embeddings: np.ndarray
    """[len(train), dim] unit embeddings of train.prompts."""
    held_out_embeddings: np.ndarray
    """[len(held_out), dim] unit embeddings of held_out.prompts."""
    catalog: ExpertCatalog
    """The experts of the tables, priced and described from the training rows (catalog_from_table)."""
    rating: OutcomeTable | None = field(default=None, kw_only=True)
    """The training rows set_aside moved out to rate the catalog instead (every expert's outcome on each), None
    without a set-aside (the catalog then rates the training rows): the operator's rating benchmark, which the
    online benchmark can also seed a cold learner's head with (outcome_head.py)."""
    rating_embeddings: np.ndarray | None = field(default=None, kw_only=True)
    """[n_set_aside, dim] unit embeddings of rating.prompts."""

    @property
    def n_set_aside(self) -> int:
        """How many training rows rate the catalog instead of being streamed (0 without a set-aside)."""
        return 0 if self.rating is None else len(self.rating)


def embed(texts: list[str], embedder: str | None = None) -> np.ndarray:
    """Unit embeddings of `texts` through the on-disk cache (`embedder`: the sentence encoder; None: MiniLM)."""
    from training.data.embedding_cache import embed_texts

    return embed_texts(texts) if embedder is None else embed_texts(texts, model=embedder)


def stratified_sample(table: OutcomeTable, limit: int | None, seed: int) -> OutcomeTable:
    """At most `limit` prompts of `table`, sampled by task in proportion (OutcomeTable.split); None: all of them."""
    if limit is None or limit >= len(table):
        return table
    return table.split(test_fraction=limit / len(table), seed=seed)[1]


def load_tables(
    train: str,
    experts: str,
    *,
    held_out: str | None = None,
    split: float = 0.3,
    limit: int | None = None,
    seed: int = 0,
) -> tuple[OutcomeTable, OutcomeTable]:
    """The training and held-out tables: `held_out` data when given, else a task-stratified `split` of `train`.

    `experts` is a preset name or a comma list of model columns; `limit` samples each loaded table down first
    (stratified by task, seeded by `seed`, which also seeds the split)."""
    models = resolve_experts(experts)
    train_table = stratified_sample(load_routerbench(train, models), limit, seed)
    if held_out is not None:
        return train_table, stratified_sample(load_routerbench(held_out, models), limit, seed)
    if not 0 < split < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1) when no evaluation data is given, got {split}")
    return train_table.split(test_fraction=split, seed=seed)


def prepare(
    train: str,
    experts: str,
    *,
    held_out: str | None = None,
    split: float = 0.3,
    limit: int | None = None,
    seed: int = 0,
    embedder: str | None = None,
) -> PreparedData:
    """load_tables, then embed both parts and build the catalog from the training rows."""
    train_table, held_out_table = load_tables(train, experts, held_out=held_out, split=split, limit=limit, seed=seed)
    return PreparedData(
        train=train_table,
        held_out=held_out_table,
        train_embeddings=embed(train_table.prompts, embedder),
        held_out_embeddings=embed(held_out_table.prompts, embedder),
        catalog=catalog_from_table(train_table, data=train),
    )


def set_aside(data: PreparedData, fraction: float, seed: int = 0, source: str = "") -> PreparedData:
    """Move a task-stratified `fraction` of the training rows out of `data.train` and rate the catalog on them.

    What an operator knows before serving: each expert's quality and price on a small benchmark of its own, not on
    the traffic it is about to route. The online benchmark streams the rest, so a cold learner's prior (the
    catalog's quality_prior, outcome_head.py) is not the stream's own per-expert mean, the best fixed expert in
    hindsight. The reduced data keeps them as `rating` (counted by `n_set_aside`); fraction 0 returns `data`
    unchanged (the catalog then rates the experts on the rows that are streamed)."""
    if fraction == 0:
        return data
    if not 0 < fraction < 1:
        raise ValueError(f"the set-aside fraction must be in [0, 1), got {fraction}")
    keep, rate = data.train.split_rows(test_fraction=fraction, seed=seed)
    if len(rate) == 0 or len(keep) == 0:
        raise ValueError(f"a set-aside of {fraction} of {len(data.train)} training prompts leaves one part empty")
    return PreparedData(
        train=data.train.subset(keep),
        held_out=data.held_out,
        train_embeddings=data.train_embeddings[keep],
        held_out_embeddings=data.held_out_embeddings,
        catalog=catalog_from_table(data.train.subset(rate), data=source),
        rating=data.train.subset(rate),
        rating_embeddings=data.train_embeddings[rate],
    )
