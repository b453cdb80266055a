"""The online learner: learning and publishing, resume after a crash, guardrails (NaN, margin), rollback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from experts.catalog import ExpertCatalog, ExpertSpec, ReplayBackendConfig
from router_deployments.checkpoints import checkpoint_digest
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext, build_strategy
from training.online.learner import (
    LearnerConfig,
    OnlineLearner,
    StrategyTraining,
    WarmStartChangedError,
    apply_policy,
)
from training.online.outcome_store import OutcomeRecord
from training.online.policy_versions import LIVE_FILE
from training.rewards import RewardConfig, bandit_reward, routing_reward

DIM = 8
SMALL_NETS = {"rl": {"embedding_dim": DIM, "hidden": [16, 16]}, "moe": {"embedding_dim": DIM, "hidden": [16]}}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks: more threads only add synchronisation (and stall on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def catalog() -> ExpertCatalog:
    def spec(name: str, price: float) -> ExpertSpec:
        return ExpertSpec(
            name=name,
            backend=ReplayBackendConfig(data="unused", model=name),
            params_b=1.0,
            price_in_per_1k=price,
            price_out_per_1k=price,
            energy_per_token_j=0.1,
            expected_latency_s=1.0,
            quality_prior=0.5,
        )

    return ExpertCatalog(experts=[spec("left", 0.004), spec("right", 0.002), spec("never", 0.001)])


def learner_config(tmp_path, strategies=("rl", "moe"), **overrides) -> LearnerConfig:
    settings = {
        "store_path": str(tmp_path / "store.db"),
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "strategies": {s: StrategyTraining(config={**SMALL_NETS[s], "seed": 0}) for s in strategies},
        "batch_size": 16,
        "min_experiences": 4,
        "publish_every_updates": 5,
        "publish_every_s": None,
        "holdback_fraction": 0.0,
        "publish_margin": 1.0,
    }
    return LearnerConfig(**{**settings, **overrides})


def score_of(embedding: np.ndarray, expert: int) -> float:
    """'left' answers prompts with x0 < 0, 'right' those with x0 > 0, 'never' nothing."""
    return float((expert == 0 and embedding[0] < 0) or (expert == 1 and embedding[0] > 0))


def feed(learner: OnlineLearner, n: int, start: int = 0, step: bool = True, strategy: str = "rl") -> list[str]:
    """n requests routed uniformly at random (probs logged), each scored; returns the acknowledged ids."""
    rng = np.random.default_rng(start)
    ids = []
    for i in range(start, start + n):
        emb = rng.normal(size=DIM).astype(np.float32)
        expert = int(rng.integers(3))
        rid = f"req-{i}"
        learner.record_outcome(
            OutcomeRecord(
                request_id=rid,
                strategy=strategy,
                expert=learner.catalog.names[expert],
                embedding=emb,
                probs=[1 / 3] * 3,
                cost_usd=[0.0016, 0.0008, 0.0004][expert],
            )
        )
        learner.record_feedback(rid, score_of(emb, expert))
        ids.append(rid)
        if step:
            learner.step()
    return ids


def test_learns_publishes_versions_and_replicas_load_them(tmp_path):
    learner = OnlineLearner(learner_config(tmp_path), catalog())
    assert learner.live_versions() == {"rl": 1, "moe": 1}  # the initial policy is published at start
    feed(learner, 40)
    status = learner.status()
    for name in ("rl", "moe"):
        s = status["strategies"][name]
        assert s["updates"] > 0 and s["publishes"] > 2 and s["replay_size"] == 40
        assert s["live_version"] == learner.live_versions()[name]
        folder = tmp_path / "ckpt" / name
        assert json.loads((folder / LIVE_FILE).read_text())["version"] == s["live_version"]
        assert (folder / f"v{s['live_version']}" / "weights.safetensors").is_file()
        version, arrays = learner.get_policy(name)
        assert all(isinstance(a, np.ndarray) for a in arrays.values())
        replica = apply_policy(build_strategy(name, learner.catalog, SMALL_NETS[name]), version, arrays)
        contexts = [RouteContext(text="", embedding=np.full(DIM, x, np.float32)) for x in (-1.0, 1.0)]
        np.testing.assert_allclose(replica.score(contexts), learner.trainees[name].live.score(contexts), rtol=1e-6)
        assert replica.policy_version == version
    for name in ("rl", "moe"):  # both explore: the learner publishes each one's decaying epsilon
        assert status["strategies"][name]["epsilon"] < 0.2
        assert learner.routing_settings(name)["epsilon"] == pytest.approx(status["strategies"][name]["epsilon"])
    assert status["store"] == {"outcomes": 40, "feedback": 40} and status["traffic"]["requests"] == 40
    assert set(status["reward_moving_average"]) == {"rl"}


def test_reward_is_the_shared_routing_reward(tmp_path):
    learner = OnlineLearner(learner_config(tmp_path, strategies=("moe",)), catalog())
    learner.record_outcome(
        OutcomeRecord(
            request_id="r",
            strategy="moe",
            expert="left",
            embedding=np.ones(DIM),
            cost_usd=0.0012,
            weights=ObjectiveWeights(quality=1.0, cost=0.5),
        )
    )
    learner.record_feedback("r", 1.0)
    experience = learner.experience(learner.store.experiences_after(0)[0])
    max_cost = float(learner.profile.cost.max())
    assert experience.reward == pytest.approx(float(bandit_reward(1.0, 0.0012, 0.5, max_cost)))
    config = RewardConfig(w_cost=0.5)
    assert experience.reward == pytest.approx(float(routing_reward(1.0, 0.0012 / max_cost, config=config)))


def test_resume_after_a_crash_loses_no_acknowledged_feedback(tmp_path):
    config = learner_config(tmp_path)
    first = OnlineLearner(config, catalog())
    acknowledged = feed(first, 33)  # trained, published every 5 updates: the last few are not in a checkpoint
    acknowledged += feed(first, 6, start=33, step=False)  # acknowledged, never read by the learner
    live = first.live_versions()
    del first  # crash: nothing is flushed or closed

    second = OnlineLearner(config, catalog())
    assert second.live_versions() == live
    resumed_at = second.cursor
    assert 0 < resumed_at < second.store.last_cursor()
    second.step()
    assert second.cursor == second.store.last_cursor()
    for t in second.trainees.values():
        assert len(t.replay) == len(acknowledged) and t.seen == len(acknowledged)
    assert len({e.embedding.tobytes() for e in second.trainees["rl"].replay}) == len(acknowledged)
    feed(second, 20, start=39)
    assert second.live_versions()["rl"] > live["rl"]
    versions = sorted(int(p.name[1:]) for p in (tmp_path / "ckpt" / "rl").glob("v*"))
    assert versions == list(range(1, second.live_versions()["rl"] + 1))  # never overwritten, none skipped


def test_nan_weights_are_never_published(tmp_path):
    learner = OnlineLearner(learner_config(tmp_path, strategies=("rl",)), catalog())
    feed(learner, 12)
    trainee = learner.trainees["rl"]
    live = learner.live_versions()["rl"]
    poisoned = {k: torch.full_like(v, float("nan")) for k, v in trainee.strategy.state_dict().items()}
    trainee.strategy.load_state_dict(poisoned)
    decision = learner.publish("rl")
    assert decision["published"] is None and decision["refused"] == "non_finite"
    assert learner.live_versions()["rl"] == live
    assert not (tmp_path / "ckpt" / "rl" / f"v{live + 1}").exists()
    assert all(bool(v.isfinite().all()) for v in trainee.strategy.state_dict().values())  # back on live weights
    assert learner.status()["strategies"]["rl"]["refused_publishes"] == {"non_finite": 1}


def _greedy(choice_of):
    def score(contexts):
        out = np.zeros((len(contexts), 3))
        for i, c in enumerate(contexts):
            out[i, choice_of(c.embedding)] = 1.0
        return out

    return score


def test_margin_guardrail_refuses_a_worse_candidate(tmp_path, monkeypatch):
    config = learner_config(
        tmp_path, strategies=("moe",), holdback_fraction=0.5, min_holdback_matches=5, publish_margin=0.05
    )
    learner = OnlineLearner(config, catalog())
    feed(learner, 60, strategy="moe")
    trainee = learner.trainees["moe"]
    assert len(trainee.holdback) > 15
    best = lambda e: 0 if e[0] < 0 else 1  # noqa: E731 - the expert that scores 1 on this prompt
    monkeypatch.setattr(trainee.live, "score", _greedy(best))
    monkeypatch.setattr(trainee.strategy, "score", _greedy(lambda e: 2))  # always the expert that never scores
    live = learner.live_versions()["moe"]
    decision = learner.publish("moe")
    assert decision["refused"] == "margin"
    assert learner.status()["strategies"]["moe"]["last_estimate"]["candidate"] == 0.0
    assert learner.status()["strategies"]["moe"]["last_estimate"]["live"] == 1.0
    assert learner.live_versions()["moe"] == live
    monkeypatch.setattr(trainee.strategy, "score", _greedy(best))
    assert learner.publish("moe")["published"] == live + 1


def test_snips_estimate_weights_by_logged_propensity(tmp_path, monkeypatch):
    config = learner_config(tmp_path, strategies=("moe",), holdback_fraction=0.999, min_holdback_matches=1)
    learner = OnlineLearner(config, catalog())
    rows = [(0, 0.5, 1.0), (0, 0.25, 0.0), (1, 0.5, 1.0)]  # (logged expert, its probability, score)
    for i, (expert, p, score) in enumerate(rows):
        probs = [0.0, 0.0, 0.0]
        probs[expert] = p
        learner.record_outcome(
            OutcomeRecord(
                request_id=f"r{i}",
                strategy="moe",
                expert=learner.catalog.names[expert],
                embedding=np.ones(DIM),
                probs=probs,
            )
        )
        learner.record_feedback(f"r{i}", score)
    learner.step()
    trainee = learner.trainees["moe"]
    monkeypatch.setattr(trainee.strategy, "score", _greedy(lambda e: 0))
    estimate = learner.evaluate(trainee)
    # Expert 0 agrees with rows 0 and 1: (1/0.5 * 1 + 1/0.25 * 0) / (1/0.5 + 1/0.25) = 1/3.
    assert estimate["candidate"] == pytest.approx(1 / 3) and estimate["candidate_matches"] == 2


def test_rollback_returns_to_the_previous_version(tmp_path):
    learner = OnlineLearner(learner_config(tmp_path, strategies=("rl",), publish_every_updates=1000), catalog())
    feed(learner, 10)
    assert learner.publish("rl")["published"] == 2
    v2 = learner.get_policy("rl")[1]
    feed(learner, 10, start=10)
    assert learner.publish("rl")["published"] == 3
    assert learner.rollback("rl") == 2
    assert learner.live_versions() == {"rl": 2}
    for k, v in learner.get_policy("rl")[1].items():
        np.testing.assert_array_equal(v, v2[k])
    live = json.loads((tmp_path / "ckpt" / "rl" / LIVE_FILE).read_text())
    assert live.pop("origin") == {"warm_start": None, "digest": None}  # a cold start, kept through rollbacks
    assert live == {"version": 2, "history": [1, 2], "rolled_back": [3], "pinned": 2, "held": []}
    assert all((tmp_path / "ckpt" / "rl" / f"v{v}").is_dir() for v in (1, 2, 3))
    feed(learner, 3, start=20)
    assert learner.publish("rl")["published"] == 4  # versions are never reused; the rollback pinned v2 live
    assert learner.live_versions() == {"rl": 2}
    learner.versions.unpin("rl")
    feed(learner, 3, start=23)
    assert learner.publish("rl")["published"] == 5 and learner.live_versions() == {"rl": 5}
    assert learner.rollback("rl") == 2 and learner.rollback("rl") == 1
    with pytest.raises(ValueError, match="no earlier published version"):
        learner.rollback("rl")
    # A restart comes back on the rolled-back version.
    assert OnlineLearner(learner.config, catalog()).live_versions() == {"rl": 1}


def test_warm_start_publishes_the_offline_checkpoint_first(tmp_path):
    offline = build_strategy("moe", catalog(), {**SMALL_NETS["moe"], "seed": 5})
    offline.save(tmp_path / "offline")
    config = learner_config(tmp_path, strategies=("moe",))
    config.strategies["moe"] = StrategyTraining(warm_start=str(tmp_path / "offline"), config=SMALL_NETS["moe"])
    learner = OnlineLearner(config, catalog())
    version, arrays = learner.get_policy("moe")
    assert version == 1
    for k, v in offline.state_dict().items():
        np.testing.assert_array_equal(arrays[k], v.numpy())


def test_status_says_how_each_strategy_started_and_a_cold_start_warns(tmp_path, caplog):
    offline = build_strategy("moe", catalog(), {**SMALL_NETS["moe"], "seed": 5})
    offline.save(tmp_path / "offline")
    config = learner_config(tmp_path)
    config.strategies["moe"] = StrategyTraining(warm_start=str(tmp_path / "offline"), config=SMALL_NETS["moe"])
    with caplog.at_level("WARNING", logger="training.online.learner"):
        first = OnlineLearner(config, catalog()).status()["strategies"]
    assert first["moe"]["start"] == f"warm from {tmp_path / 'offline'}" and first["rl"]["start"] == "cold"
    cold = [r.getMessage() for r in caplog.records if "untrained" in r.getMessage()]
    assert cold == ["strategy rl: no checkpoint and no warm start, serving an untrained network"]
    again = OnlineLearner(config, catalog()).status()["strategies"]
    assert again["moe"]["start"] == "resumed v1" and again["rl"]["start"] == "resumed v1"


def warm_config(tmp_path, checkpoint: str) -> LearnerConfig:
    config = learner_config(tmp_path, strategies=("moe",))
    config.strategies["moe"] = StrategyTraining(warm_start=checkpoint, config=SMALL_NETS["moe"])
    return config


def test_a_changed_warm_start_refuses_to_resume_naming_the_field(tmp_path):
    """A resumed learner serves its live version and never reads the warm start again: a new checkpoint (another
    path, or a rerun of `routerllm rate` into the same one) must not be ignored in silence."""
    for seed, where in ((5, "offline"), (6, "rerated")):
        build_strategy("moe", catalog(), {**SMALL_NETS["moe"], "seed": seed}).save(tmp_path / where)
    learner = OnlineLearner(warm_config(tmp_path, str(tmp_path / "offline")), catalog())
    feed(learner, 20, strategy="moe")
    live = learner.live_versions()["moe"]
    assert live > 1
    assert OnlineLearner(warm_config(tmp_path, str(tmp_path / "offline")), catalog()).live_versions()["moe"] == live

    with pytest.raises(WarmStartChangedError) as e:
        OnlineLearner(warm_config(tmp_path, str(tmp_path / "rerated")), catalog())
    message = str(e.value)
    assert "learner.training.strategies.moe.warm_start (router.strategies.moe.checkpoint)" in message
    assert str(tmp_path / "offline") in message and str(tmp_path / "rerated") in message
    assert f"live v{live}" in message and "checkpoint_dir" in message

    # The same path with new contents refuses too, naming both digests.
    old = checkpoint_digest(tmp_path / "offline")
    build_strategy("moe", catalog(), {**SMALL_NETS["moe"], "seed": 7}).save(tmp_path / "offline")
    with pytest.raises(WarmStartChangedError, match=f"digest {old} -> {checkpoint_digest(tmp_path / 'offline')}"):
        OnlineLearner(warm_config(tmp_path, str(tmp_path / "offline")), catalog())
    with pytest.raises(WarmStartChangedError, match="now gives None"):  # dropping the warm start is a change too
        OnlineLearner(learner_config(tmp_path, strategies=("moe",)), catalog())

    # The refusals wrote nothing. An empty checkpoint_dir starts from the new checkpoint, and learns the
    # store's experiences again.
    assert json.loads((tmp_path / "ckpt" / "moe" / LIVE_FILE).read_text())["version"] == live
    fresh = warm_config(tmp_path, str(tmp_path / "rerated"))
    fresh = fresh.model_copy(update={"checkpoint_dir": str(tmp_path / "new")})
    restarted = OnlineLearner(fresh, catalog())
    version, arrays = restarted.get_policy("moe")
    rerated = build_strategy("moe", catalog(), {**SMALL_NETS["moe"], "seed": 6}).state_dict()
    assert version == 1 and all(np.array_equal(arrays[k], v.numpy()) for k, v in rerated.items())
    restarted.step()
    assert restarted.trainees["moe"].seen == 20


def test_a_deleted_warm_start_or_an_old_pointer_still_resumes(tmp_path):
    build_strategy("moe", catalog(), {**SMALL_NETS["moe"], "seed": 5}).save(tmp_path / "offline")
    config = warm_config(tmp_path, str(tmp_path / "offline"))
    OnlineLearner(config, catalog())
    for f in (tmp_path / "offline").iterdir():  # not needed to resume: the live version holds the weights
        f.unlink()
    assert OnlineLearner(config, catalog()).live_versions() == {"moe": 1}
    pointer = tmp_path / "ckpt" / "moe" / LIVE_FILE
    live = json.loads(pointer.read_text())
    del live["origin"]  # written before origins were kept
    pointer.write_text(json.dumps(live))
    assert OnlineLearner(config, catalog()).live_versions() == {"moe": 1}
    assert json.loads(pointer.read_text())["origin"] == {"warm_start": str(tmp_path / "offline"), "digest": None}


def test_ack_times_how_long_a_publish_takes_to_reach_every_replica(tmp_path):
    clock = iter(range(100, 10_000))
    learner = OnlineLearner(learner_config(tmp_path, strategies=("moe",)), catalog(), clock=lambda: next(clock))
    version = learner.live_versions()["moe"]
    published = learner.trainees["moe"].published_at[version]
    learner.ack("replica-a", "moe", version, published + 0.5)
    learner.ack("replica-b", "moe", version - 1, published + 0.1)
    assert learner.propagation("moe")["seconds_to_all"] is None
    learner.ack("replica-b", "moe", version, published + 2.0)
    assert learner.propagation("moe") == {"version": version, "replicas": 2, "on_live": 2, "seconds_to_all": 2.0}


def test_train_on_own_ignores_other_strategies_outcomes(tmp_path):
    config = learner_config(tmp_path)
    config.strategies["rl"] = StrategyTraining(config=SMALL_NETS["rl"], train_on="own")
    learner = OnlineLearner(config, catalog())
    feed(learner, 10, strategy="moe")
    assert len(learner.trainees["rl"].replay) == 0 and len(learner.trainees["moe"].replay) == 10


def test_only_learnable_strategies_can_be_trained(tmp_path):
    config = learner_config(tmp_path, strategies=("moe",))
    config.strategies["knn"] = StrategyTraining()
    with pytest.raises(ValueError, match="does not learn online"):
        OnlineLearner(config, catalog())
    with pytest.raises(ValueError):
        LearnerConfig(store_path="x", checkpoint_dir="y", batch_sise=3)


def test_outcomes_are_recorded_as_outcome_records_only(tmp_path):
    learner = OnlineLearner(learner_config(tmp_path, strategies=("moe",)), catalog())
    as_dict = {"request_id": "r", "strategy": "moe", "expert": "left", "embedding": np.ones(DIM)}
    with pytest.raises(TypeError, match="OutcomeRecord"):
        learner.record_outcome(as_dict)
    with pytest.raises(TypeError, match="OutcomeRecord"):
        learner.record_outcomes([OutcomeRecord(**as_dict), as_dict])
    assert learner.store.counts()["outcomes"] == 0  # nothing of a refused batch is written
    assert learner.record_outcomes([OutcomeRecord(**as_dict)]) == 1 and not learner.record_outcome(
        OutcomeRecord(**as_dict)
    )


def test_weights_of_requests_drive_the_reward(tmp_path):
    learner = OnlineLearner(learner_config(tmp_path, strategies=("moe",)), catalog())
    for rid, weights in (("cheap", {"quality": 1, "cost": 10}), ("quality", {"quality": 1})):
        learner.record_outcome(
            OutcomeRecord(
                request_id=rid,
                strategy="moe",
                expert="left",
                embedding=np.ones(DIM),
                cost_usd=0.0016,
                weights=ObjectiveWeights(**weights),
            )
        )
        learner.record_feedback(rid, 1.0)
    rewards = [learner.experience(e).reward for e in learner.store.experiences_after(0)]
    assert rewards[0] == pytest.approx(1 - 10 * 0.0016 / float(learner.profile.cost.max())) and rewards[1] == 1.0
