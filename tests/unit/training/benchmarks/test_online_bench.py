"""`routerllm bench-online` end to end on a small slice of the shared RouterBench data."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest

from router_deployments.objectives import ExpertProfile
from router_deployments.strategies.outcome_head import BayesianOutcomeHead, OutcomeHeadConfig, observe_rated
from training.benchmarks.online import FullInformationRouter, LearnerRouter
from training.benchmarks.online_setup import COLD_HEAD, OnlineBenchConfig, build_learner, prepare_stream, rating_rows
from training.benchmarks.shift import ShiftPlan
from training.benchmarks.stream import StreamRouter, replay_stream
from training.benchmarks.vowpal_wabbit import VowpalWabbitRouter
from training.cli import main

pytestmark = pytest.mark.data
HAS_VW = importlib.util.find_spec("vowpalwabbit") is not None
HEAD_CONFIG = OutcomeHeadConfig(**COLD_HEAD)


def test_bench_online_smoke(routerbench_dir, tmp_path, capsys, fake_embeddings):
    out = tmp_path / "online"
    argv = ["bench-online", "--data", str(routerbench_dir), "--out", str(out), "--experts", "seed4"]
    argv += ["--limit", "80", "--passes", "2", "--lam", "0.5", "--window", "20", "--starts", "cold,warm"]
    argv += ["--trainer", "rl.total_steps=160", "--trainer", "rl.learning_starts=64", "--trainer", "rl.val_fraction=0"]
    argv += ["--trainer", "moe.epochs=2", "--trainer", "moe.val_fraction=0", "--learner", "publish_every_updates=4"]
    argv += ["--explore", "warm.epsilon_start=0.1"]
    argv += [] if HAS_VW else ["--no-vw"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["exploration"] == {"warm": {"epsilon_start": 0.1}}
    assert results["routers"]["rl-warm"]["epsilon"] > 0.05  # from 0.1, not the default 0.03, decaying to 0.005
    assert (out / "learning_curve.png").stat().st_size > 10_000
    expected = {"rl-cold", "rl-warm", "moe-cold", "moe-warm"} | ({"vw-squarecb"} if HAS_VW else set())
    assert set(results["routers"]) == expected
    n = results["n_train"]
    assert results["n_stream"] == 2 * n and n + results["n_set_aside"] + results["n_held_out"] == 80
    assert results["n_set_aside"] == round(0.1 * (80 - results["n_held_out"]))  # rates the catalog, never streamed
    refs = results["references"]
    assert refs["random"]["average_reward"] <= refs["best_fixed"]["average_reward"] <= refs["oracle"]["average_reward"]
    per_task = refs["best_fixed_per_task"]  # in hindsight, per task: never below one expert for all, never the oracle
    assert refs["best_fixed"]["average_reward"] <= per_task["average_reward"] <= refs["oracle"]["average_reward"]
    assert set(per_task["experts"]) <= {"arc-challenge", "mbpp", "winogrande"}
    assert set(per_task["experts"].values()) <= set(results["experts"])
    for name, r in results["routers"].items():
        assert len(r["windows"]) == -(-2 * n // 20) and len(r["per_pass"]) == 2
        assert r["average_reward"] <= refs["oracle"]["average_reward"] + 1e-9
        assert 0 <= r["held_out"]["quality"] <= 1
        if name != "vw-squarecb":
            assert r["publishes"] > 1 and r["live_version"] > 1
            assert set(results["targets"][name]) == {"beats_best_fixed", "beats_vw"}
    full = refs["full_information"]
    assert refs["random"]["average_reward"] <= full["average_reward"] <= refs["oracle"]["average_reward"]
    assert len(full["windows"]) == -(-2 * n // 20) and 0 <= full["held_out"]["quality"] <= 1
    printed = capsys.readouterr().out
    assert "rl-cold" in printed and "full information (the cold head told every expert's outcome" in printed
    assert f"rated on {results['n_set_aside']} set-aside prompts, never streamed" in printed


class FixedRouter:
    """A StreamRouter that always calls one expert: the shape the --through-serve hook fills in."""

    def __init__(self, expert: int):
        self.expert, self.seen = expert, 0

    def route(self, event: int, row: int) -> list[int]:
        return [self.expert]

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        self.seen += 1

    def greedy(self, embeddings, texts):
        return np.full(len(embeddings), self.expert)

    def summary(self) -> dict:
        return {}


def test_replaying_a_fixed_expert_scores_its_mean_reward(routerbench_dir, fake_embeddings):
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=60, passes=2)
    stream = prepare_stream(config)
    router: StreamRouter = FixedRouter(3)
    rewards = replay_stream(router, stream, progress=False)
    expected = stream.rewards(stream.train)[stream.rows, 3]
    np.testing.assert_allclose(rewards, expected)
    assert router.seen == len(stream.rows) == 2 * len(stream.train)
    assert sorted(stream.rows[: len(stream.train)]) == list(range(len(stream.train)))  # each pass is a permutation


@pytest.mark.parametrize("name", ["rl", "moe"])
def test_a_cold_learner_starts_from_the_rating_table_and_only_with_the_rating_prior(
    routerbench_dir, tmp_path, fake_embeddings, name
):
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=120, seed=1, passes=1, set_aside=0.25)
    stream = prepare_stream(config)
    n_rating, n_experts = len(stream.rating), len(stream.catalog)
    learner = build_learner(name, "cold", stream, config, tmp_path / "with")
    for strategy in (learner.trainees[name].strategy, learner.trainees[name].live):
        assert strategy.head.count.tolist() == [n_rating] * n_experts  # every expert on every set-aside prompt
    expected = BayesianOutcomeHead(ExpertProfile(stream.catalog), stream.train_embeddings.shape[1], HEAD_CONFIG)
    table = stream.rating
    observe_rated(expected, stream.rating_embeddings, table.scores, table.costs, ExpertProfile(stream.catalog))
    probe = stream.held_out_embeddings[:5]
    np.testing.assert_allclose(learner.trainees[name].live.head.predict(probe), expected.predict(probe), atol=1e-9)
    centre = stream.rating_embeddings.mean(axis=0)
    np.testing.assert_allclose(learner.trainees[name].live.head.center, centre, atol=1e-6)
    # The prompt types are fitted on the rating table too, and travel with the published policy.
    np.testing.assert_allclose(learner.trainees[name].live.head.prototypes, expected.prototypes)
    assert learner.trainees[name].live.head.prototypes.shape[0] == COLD_HEAD["clusters"] > 0

    config.rating_prior = False
    plain = build_learner(name, "cold", stream, config, tmp_path / "without")
    assert plain.trainees[name].live.head.count.sum() == 0  # the catalog's means alone


def test_the_full_information_reference_observes_every_expert_on_every_prompt(routerbench_dir, fake_embeddings):
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=100, seed=2, passes=1)
    stream = prepare_stream(config)
    router = FullInformationRouter(stream, config)
    n_rating, n_experts = len(stream.rating), len(stream.catalog)
    assert router.strategy.head.count.tolist() == [n_rating] * n_experts
    rewards = replay_stream(router, stream, progress=False)
    assert router.strategy.head.count.tolist() == [n_rating + len(stream.rows)] * n_experts
    # One prompt at a time is the same evidence as the whole table at once: rating rows, then the stream.
    expected = BayesianOutcomeHead(ExpertProfile(stream.catalog), stream.train_embeddings.shape[1], HEAD_CONFIG)
    profile, table, seen = ExpertProfile(stream.catalog), stream.rating, stream.train.subset(stream.rows)
    observe_rated(expected, stream.rating_embeddings, table.scores, table.costs, profile)
    observe_rated(expected, stream.train_embeddings[stream.rows], seen.scores, seen.costs, profile)
    probe = stream.held_out_embeddings[:5]
    np.testing.assert_allclose(router.strategy.head.predict(probe), expected.predict(probe), atol=1e-8)
    assert len(rewards) == len(stream.rows)


def test_a_sampling_seed_redraws_the_routers_on_the_same_stream(routerbench_dir, tmp_path, fake_embeddings):
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=100, seed=1, passes=1)
    other = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=100, seed=1, passes=1, sampling_seed=7)
    stream, same = prepare_stream(config), prepare_stream(other)
    np.testing.assert_array_equal(stream.rows, same.rows)  # the split, the slice and the order are --seed's
    assert stream.rating.sample_ids == same.rating.sample_ids and (config.router_seed, other.router_seed) == (1, 7)
    for cfg, seed in ((config, 1), (other, 7)):
        learner = build_learner("rl", "cold", stream, cfg, tmp_path / str(seed))
        assert learner.config.seed == seed and learner.trainees["rl"].settings.config["seed"] == seed
    first = LearnerRouter("rl", build_learner("rl", "cold", stream, other, tmp_path / "a"), stream)
    again = LearnerRouter("rl", build_learner("rl", "cold", stream, other, tmp_path / "b"), stream)
    redrawn = LearnerRouter("rl", build_learner("rl", "cold", stream, config, tmp_path / "c"), stream)
    runs = [replay_stream(r, stream, progress=False) for r in (first, again, redrawn)]
    np.testing.assert_array_equal(runs[0], runs[1])  # one seed, one run
    assert not np.array_equal(runs[0], runs[2])  # Thompson sampling drew otherwise


def test_in_the_shift_scenario_the_rating_prior_holds_the_old_tasks_only(routerbench_dir, fake_embeddings):
    plan = ShiftPlan(length=40)
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=150, seed=0, set_aside=0.3, shift=plan)
    stream = prepare_stream(config)
    rows = rating_rows(stream, config)
    assert len(rows) and plan.new_task not in {stream.rating.tasks[i] for i in rows}
    assert {t for t in stream.rating.tasks if t != plan.new_task} == {stream.rating.tasks[i] for i in rows}
    config.rating_prior = False
    assert len(rating_rows(stream, config)) == 0


def test_a_warm_head_observes_its_fits_training_prompts_and_nothing_of_the_new_task(
    routerbench_dir, tmp_path, fake_embeddings
):
    plan = ShiftPlan(length=40)
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=150, seed=0, shift=plan)
    config.trainer_options = {"moe": ["--epochs", "1", "--val-fraction", "0"]}
    stream = prepare_stream(config)
    old = [i for i, t in enumerate(stream.train.tasks) if t != plan.new_task]
    live = build_learner("moe", "warm", stream, config, tmp_path / "seeded").trainees["moe"].live
    # Every expert's outcome on each of the old tasks' training prompts, once (what `routerllm rate --from` does).
    np.testing.assert_array_equal(live.head.count, [len(old)] * 4)
    assert live.config.thompson_scale == 0.1 and not live.head.center.any()
    new_prompts = stream.train_embeddings[[i for i in range(len(stream.train)) if i not in set(old)]]
    seen, unseen = live.head.network_share(stream.train_embeddings[old], 0.5), live.head.network_share(new_prompts, 0.5)
    assert seen.mean() < unseen.mean()  # the offline network keeps more say where the head has seen less

    # --no-warm-head: the head starts at the catalog's means; a centred one is centred on those prompts.
    config.warm_head = False
    assert build_learner("moe", "warm", stream, config, tmp_path / "plain").trainees["moe"].live.head.count.sum() == 0
    config.strategy_config = {"moe": {"head": {**COLD_HEAD}}}
    live = build_learner("moe", "warm", stream, config, tmp_path / "centred").trainees["moe"].live
    np.testing.assert_allclose(live.head.center, stream.train_embeddings[old].mean(axis=0), atol=1e-6)
    assert live.head.has_prototypes  # and given its prompt types on them
    assert live.head.count.sum() == 0  # centred, no outcome observed: the offline fit routes where nothing is known


@pytest.mark.skipif(not HAS_VW, reason="needs the vowpalwabbit package (the bench extra)")
def test_vw_pretrained_on_the_rating_table_starts_from_it(routerbench_dir, fake_embeddings):
    config = OnlineBenchConfig(data=str(routerbench_dir), out="unused", limit=120, seed=1, passes=1, set_aside=0.25)
    stream = prepare_stream(config)
    cold = VowpalWabbitRouter(stream, seed=0)
    rated = VowpalWabbitRouter(stream, seed=0).pretrain(rating_rows(stream, config))
    assert cold.summary()["pretrained_prompts"] == 0 and rated.summary()["pretrained_prompts"] == len(stream.rating)
    # Untrained, VW's distribution over experts is the same for every prompt; pretrained, it follows the table.
    probe = stream.held_out_embeddings[:10]
    assert np.allclose([cold._pmf(e) for e in probe], cold._pmf(probe[0]))
    assert not np.allclose([rated._pmf(e) for e in probe], rated._pmf(probe[0]))
    rewards = stream.rewards(stream.rating)
    greedy = rated.greedy(stream.rating_embeddings, stream.rating.prompts)
    assert rewards[np.arange(len(rewards)), greedy].mean() > rewards.mean()  # better than a random expert on it


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--explore", "hot.epsilon_start=0.1"], r"Invalid --explore starts \['hot'\]. Available starts are"),
        (["--explore", "warm.epsilonn=0.1"], r"Invalid --explore warm\.epsilonn: Extra inputs are not permitted"),
        (["--explore", "cold.epsilon_end=2"], r"Invalid --explore cold\.epsilon_end: Input should be less than"),
        (["--set", "knn.k=3"], r"--set names strategies \['knn'\] that do not learn online here"),
    ],
)
def test_bad_overrides_are_refused_before_any_work(routerbench_dir, tmp_path, capsys, flags, message):
    out = tmp_path / "online"
    argv = ["bench-online", "--data", str(routerbench_dir), "--out", str(out), "--limit", "40", *flags]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()  # refused before the stream was prepared or anything written
