"""Checkpoints under another catalog: experts match by outcome-table column (`trained_as`) or, for checkpoints
that recorded names only, by name; a mismatch names both lists."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experts.catalog import ExpertCatalog
from router_deployments.checkpoints import META_FILE, CheckpointError
from router_deployments.strategies import RouteContext
from router_deployments.strategies.moe import MoEConfig, MoEStrategy
from training.data.routerbench import OutcomeTable, catalog_from_table

MODELS = ["org/big-70b", "org/small-7b"]
CONFIG = MoEConfig(embedding_dim=4, hidden=[8])


def trained_catalog() -> ExpertCatalog:
    scores = np.array([[1, 0], [0, 1]], dtype=np.float32)
    costs = np.array([[1e-3, 1e-4]] * 2, dtype=np.float32)
    table = OutcomeTable(["a", "b"], ["p", "q"], ["t", "t"], list(MODELS), scores, costs)
    return catalog_from_table(table)


def serving_catalog(trained_as: list[str | None]) -> ExpertCatalog:
    figures = dict(params_b=1, price_in_per_1k=0, price_out_per_1k=0, energy_per_token_j=0, expected_latency_s=1)
    experts = [
        {"name": name, "backend": {"kind": "openai", "model": "m", "base_url": "http://x/v1"}, "quality_prior": 0.5}
        | figures
        | ({"trained_as": column} if column else {})
        for name, column in zip(["slot_70b", "slot_7b"], trained_as)
    ]
    return ExpertCatalog(experts=experts)


def test_the_checkpoint_records_each_experts_table_column(tmp_path):
    MoEStrategy(trained_catalog(), CONFIG).save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["experts"] == ["big-70b", "small-7b"] and meta["columns"] == MODELS


def test_a_catalog_naming_the_columns_serves_the_checkpoint_under_its_own_names(tmp_path):
    trained = MoEStrategy(trained_catalog(), CONFIG)
    trained.save(tmp_path)
    served = MoEStrategy(serving_catalog(MODELS), CONFIG)
    served.load(tmp_path)
    ctx = [RouteContext(text="x", embedding=np.ones(4, np.float32))]
    assert np.array_equal(served.score(ctx), trained.score(ctx))
    assert served.route(ctx[0]).expert in ("slot_70b", "slot_7b")


def test_a_mismatch_names_both_lists_and_the_way_out(tmp_path):
    MoEStrategy(trained_catalog(), CONFIG).save(tmp_path)
    for columns in ([None, None], list(reversed(MODELS))):
        with pytest.raises(CheckpointError) as err:
            MoEStrategy(serving_catalog(columns), CONFIG).load(tmp_path)
        message = str(err.value)
        assert "['big-70b', 'small-7b']" in message and str(MODELS) in message
        assert "['slot_70b', 'slot_7b']" in message and "trained_as" in message


def test_an_old_checkpoint_without_columns_loads_by_name(tmp_path):
    MoEStrategy(trained_catalog(), CONFIG).save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    del meta["columns"]
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    MoEStrategy(trained_catalog(), CONFIG).load(tmp_path)  # same names
    with pytest.raises(CheckpointError, match="columns None"):
        MoEStrategy(serving_catalog(MODELS), CONFIG).load(tmp_path)
