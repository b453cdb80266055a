"""The data preparation both benchmarks share (training/data/prepared.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.benchmarks.online_setup import OnlineBenchConfig, prepare_stream
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
    """bench --split S --limit N --seed K and bench-online --holdout S --limit N --seed K --set-aside 0 see the same
    prompts."""
    config = OnlineBenchConfig(
        data=str(routerbench_dir), out="unused", holdout=0.3, limit=90, seed=2, passes=3, set_aside=0.0
    )
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


def test_set_aside_rates_the_catalog_on_rows_that_are_not_streamed(routerbench_dir, fake_embeddings):
    data = prepared.prepare(str(routerbench_dir), "seed4", split=0.3, limit=200, seed=1)
    reduced = prepared.set_aside(data, 0.2, seed=1, source=str(routerbench_dir))
    keep, rating = data.train.split_rows(0.2, seed=1)
    n = reduced.n_set_aside
    assert data.n_set_aside == 0 and n == len(rating) == round(0.2 * len(data.train))
    assert len(reduced.train) == len(keep) == len(data.train) - n
    assert not set(keep) & set(rating)
    assert reduced.train.sample_ids == [data.train.sample_ids[i] for i in keep]
    assert reduced.held_out.sample_ids == data.held_out.sample_ids
    np.testing.assert_array_equal(reduced.train_embeddings, data.train_embeddings[keep])
    # The rows that rated the catalog come along (every expert's outcome on each), for a rating prior.
    assert reduced.rating.sample_ids == [data.train.sample_ids[i] for i in rating]
    np.testing.assert_array_equal(reduced.rating.scores, data.train.scores[rating])
    np.testing.assert_array_equal(reduced.rating_embeddings, data.train_embeddings[rating])
    assert data.rating is None and data.rating_embeddings is None
    # Each expert's quality prior is its mean score on the rows set aside, not on the rows streamed.
    priors = np.array([e.quality_prior for e in reduced.catalog.experts])
    np.testing.assert_allclose(priors, data.train.scores[rating].mean(axis=0), atol=1e-6)
    assert not np.allclose(priors, reduced.train.scores.mean(axis=0), atol=1e-3)
    # Stratified by task: every task is on both sides.
    assert {data.train.tasks[i] for i in rating} == set(reduced.train.tasks) == set(data.train.tasks)
    assert prepared.set_aside(data, 0.0) is data


@pytest.mark.parametrize("fraction", [1.0, -0.1, 0.999])
def test_a_set_aside_outside_0_1_or_leaving_a_side_empty_is_refused(routerbench_dir, fake_embeddings, fraction):
    data = prepared.prepare(str(routerbench_dir), "seed4", split=0.3, limit=40, seed=0)
    with pytest.raises(ValueError, match="set-aside"):
        prepared.set_aside(data, fraction)


def test_the_online_stream_never_replays_the_rows_that_rated_its_catalog(routerbench_dir, fake_embeddings):
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=120, seed=2, passes=1, set_aside=0.25)
    stream = prepare_stream(config)
    offline = prepared.prepare(str(routerbench_dir), "seed4", split=0.3, limit=120, seed=2)
    assert stream.n_set_aside == len(offline.train) - len(stream.train) > 0
    assert set(stream.train.sample_ids) <= set(offline.train.sample_ids)
    assert stream.held_out.sample_ids == offline.held_out.sample_ids
    assert len(stream.rows) == len(stream.train)
