"""The data preparation both benchmarks share (training/data/prepared.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.benchmarks.online import OnlineBenchConfig, prepare_stream
from training.data import prepared
from training.data.routerbench import PRESETS, load_routerbench

pytestmark = pytest.mark.data


def test_prepare_samples_splits_embeds_and_builds_the_catalog(routerbench_dir, fake_embeddings):
    data = prepared.prepare(str(routerbench_dir), "seed4", split=0.25, limit=120, seed=3)
    assert len(data.train) + len(data.held_out) == 120 and len(data.held_out) == 30
    assert data.train.models == data.held_out.models == PRESETS["seed4"]
    assert data.catalog.names == [m.split("/")[-1] for m in PRESETS["seed4"]]
    assert not set(data.train.sample_ids) & set(data.held_out.sample_ids)
    # Every task of the sample is on both sides (stratified by task).
    assert set(data.train.tasks) == set(data.held_out.tasks) == {"arc-challenge", "mbpp", "winogrande"}
    np.testing.assert_array_equal(data.train_embeddings, prepared.embed(data.train.prompts))
    np.testing.assert_array_equal(data.held_out_embeddings, prepared.embed(data.held_out.prompts))
    again = prepared.prepare(str(routerbench_dir), "seed4", split=0.25, limit=120, seed=3)
    assert again.train.sample_ids == data.train.sample_ids and again.held_out.sample_ids == data.held_out.sample_ids
    other = prepared.prepare(str(routerbench_dir), "seed4", split=0.25, limit=120, seed=4)
    assert other.train.sample_ids != data.train.sample_ids


def test_separate_evaluation_data_is_sampled_not_split(routerbench_dir, fake_embeddings):
    train, held_out = routerbench_dir / "mbpp_train.csv", routerbench_dir / "arc_challenge_train.csv"
    data = prepared.prepare(str(train), "mix4", held_out=str(held_out), limit=50, split=0.0)
    assert len(data.train) == len(data.held_out) == 50
    assert set(data.train.tasks) == {"mbpp"} and set(data.held_out.tasks) == {"arc-challenge"}
    whole = prepared.prepare(str(train), "mix4", held_out=str(held_out))
    assert len(whole.train) == len(load_routerbench(train, PRESETS["mix4"]))


@pytest.mark.parametrize("split", [0.0, 1.0, -0.1])
def test_a_split_outside_0_1_without_evaluation_data_is_refused(routerbench_dir, split):
    with pytest.raises(ValueError, match=r"held-out fraction must be in \(0, 1\)"):
        prepared.load_tables(str(routerbench_dir), "seed4", split=split)


def test_stratified_sample_keeps_small_tables_whole(routerbench_dir):
    table = load_routerbench(routerbench_dir / "mbpp_train.csv", PRESETS["seed4"])
    assert prepared.stratified_sample(table, None, 0) is table
    assert prepared.stratified_sample(table, len(table), 0) is table
    assert len(prepared.stratified_sample(table, 40, 0)) == 40


def test_the_online_stream_replays_the_same_preparation_as_the_offline_bench(routerbench_dir, fake_embeddings):
    """bench --split S --limit N --seed K and bench-online --holdout S --limit N --seed K see the same prompts."""
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", holdout=0.3, limit=90, seed=2, passes=3)
    stream = prepare_stream(config)
    offline = prepared.prepare(str(routerbench_dir), "seed4", split=0.3, limit=90, seed=2)
    assert stream.train.sample_ids == offline.train.sample_ids
    assert stream.held_out.sample_ids == offline.held_out.sample_ids
    np.testing.assert_array_equal(stream.train_embeddings, offline.train_embeddings)
    assert stream.catalog.names == offline.catalog.names
    n = len(stream.train)
    assert len(stream.rows) == 3 * n and all(
        sorted(stream.rows[p * n : (p + 1) * n]) == list(range(n)) for p in range(3)
    )
    assert stream.max_mean_cost == pytest.approx(float(stream.train.costs.mean(axis=0).max()))
