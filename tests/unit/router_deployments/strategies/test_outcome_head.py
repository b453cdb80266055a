"""The Bayesian linear head (outcome_head.py) and its use by rl and moe: prior, exact updates, exploration, state."""

from __future__ import annotations

import numpy as np
import pytest

from experts.catalog import ExpertCatalog, ExpertSpec, ReplayBackendConfig
from router_deployments.checkpoints import CheckpointError
from router_deployments.objectives import ExpertProfile, ObjectiveWeights
from router_deployments.policy_sync import policy_copy
from router_deployments.strategies import Experience, RouteContext, build_strategy
from router_deployments.strategies.outcome_head import (
    BayesianOutcomeHead,
    OutcomeHeadConfig,
    experience_outcomes,
    kmeans,
    observe_rated,
)

DIM = 6


def spec(name: str, price: float, quality: float) -> ExpertSpec:
    return ExpertSpec(
        name=name,
        backend=ReplayBackendConfig(data="", model=name),
        params_b=7.0,
        price_in_per_1k=price,
        price_out_per_1k=price,
        energy_per_token_j=0.1,
        expected_latency_s=1.0,
        quality_prior=quality,
    )


@pytest.fixture
def catalog() -> ExpertCatalog:
    return ExpertCatalog(experts=[spec("good", 0.002, 0.7), spec("fair", 0.001, 0.5), spec("poor", 0.001, 0.2)])


def head(catalog, **config) -> BayesianOutcomeHead:
    return BayesianOutcomeHead(ExpertProfile(catalog), DIM, OutcomeHeadConfig(**config))


def prompts(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_cold_head_predicts_the_catalog(catalog):
    h = head(catalog)
    mean = h.predict(prompts(3))
    profile = ExpertProfile(catalog)
    np.testing.assert_allclose(mean[:, :, 0], np.tile(profile.quality, (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(mean[:, :, 1], np.tile(profile.cost_norm, (3, 1)), rtol=1e-6)
    utility = h.utility(mean, np.array([1.0, 0.5, 0.0, 0.0]))
    np.testing.assert_allclose(utility[0], profile.utility(profile.quality, ObjectiveWeights(cost=0.5)), rtol=1e-6)


def test_observe_matches_the_closed_form_ridge_posterior(catalog):
    h = head(catalog, ridge=2.0)
    x = prompts(30)
    y = np.random.default_rng(1).random((30, 4))
    experts = np.zeros(30, dtype=int)
    h.observe(x, experts, y)
    f = h.phi(x)
    theta = np.linalg.solve(2.0 * np.eye(h.dim) + f.T @ f, f.T @ (y - h.prior[0]))
    np.testing.assert_allclose(h.predict(x[:5])[:, 0], h.prior[0] + f[:5] @ theta, atol=1e-8)
    np.testing.assert_allclose(h.predict(x[:5])[:, 1], np.tile(h.prior[1], (5, 1)))  # other experts: untouched
    assert h.count.tolist() == [30, 0, 0]
    assert (h.posterior_sd(x[:5])[:, 0] < h.posterior_sd(x[:5])[:, 1]).all()  # evidence shrinks the spread


def test_the_head_learns_where_an_expert_is_better_and_generalises(catalog):
    h = head(catalog, ridge=1.0)
    x = prompts(400)
    for j in (0, 1):  # 'fair' answers prompts with x0 > 0, 'good' those with x0 < 0
        q = ((x[:, 0] > 0) == (j == 1)).astype(float)
        h.observe(x, np.full(400, j), np.stack([q, np.zeros(400), np.zeros(400), np.zeros(400)], 1))
    new = prompts(200, seed=7)
    choice = h.utility(h.predict(new), np.array([1.0, 0, 0, 0])).argmax(1)
    assert (choice == np.where(new[:, 0] > 0, 1, 0)).mean() > 0.9


def test_random_projection_and_bad_input(catalog):
    h = head(catalog, features=3)
    assert h.phi(prompts(2)).shape == (2, 4)
    with pytest.raises(ValueError, match="embedding dim"):
        h.predict(np.ones((1, DIM + 1)))
    with pytest.raises(ValueError, match="expert indices"):
        h.observe(prompts(1), [3], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="one outcome row"):
        h.observe(prompts(2), [0, 1], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="finite"):
        h.observe(prompts(1), [0], np.full((1, 4), np.nan))


def test_experience_outcomes_use_the_catalogs_scale(catalog):
    profile = ExpertProfile(catalog)
    e = Experience(embedding=np.zeros(DIM), expert=0, reward=0.0, quality=0.8, cost_usd=float(profile.cost.max()))
    np.testing.assert_allclose(experience_outcomes([e], profile)[0], [0.8, 1.0, 0.0, 0.0])


def test_a_rating_table_seeds_every_expert_as_if_each_outcome_had_been_observed(catalog):
    profile = ExpertProfile(catalog)
    x = prompts(40)
    rng = np.random.default_rng(3)
    scores = (rng.random((40, 3)) < [0.3, 0.6, 0.5]).astype(float)
    costs = rng.uniform(0.5, 1.5, (40, 3)) * profile.cost
    rated, one_by_one = head(catalog, ridge=2.0), head(catalog, ridge=2.0)
    assert observe_rated(rated, x, scores, costs, profile) == {"head_observed": 120.0}
    for j in range(3):
        y = np.stack([scores[:, j], costs[:, j] / profile.cost.max(), np.full(40, profile.carbon_norm[j])], 1)
        one_by_one.observe(x, np.full(40, j), np.concatenate([y, np.full((40, 1), profile.latency_norm[j])], 1))
    np.testing.assert_allclose(rated.predict(x), one_by_one.predict(x), atol=1e-10)
    assert rated.count.tolist() == [40, 40, 40]
    # The table overrides the catalog: 'good' (prior 0.7) scored 0.3 here, 'fair' (prior 0.5) 0.6.
    quality = rated.predict(prompts(20, seed=9))[:, :, 0].mean(axis=0)
    assert quality[1] > quality[0] and abs(quality[0] - scores[:, 0].mean()) < abs(0.7 - scores[:, 0].mean())
    with pytest.raises(ValueError, match="rating table"):
        observe_rated(rated, x[:10], scores, costs, profile)
    with pytest.raises(ValueError, match="rating table"):
        observe_rated(rated, x, scores[:, :2], costs[:, :2], profile)


def test_a_centred_head_is_the_plain_head_on_shifted_scaled_prompts_and_checkpoints_its_centre(catalog):
    profile = ExpertProfile(catalog)
    rng = np.random.default_rng(4)
    offset = np.full(DIM, 0.5)  # a common direction every prompt shares, as sentence embeddings do
    x = prompts(60) + offset
    scores, costs = rng.random((60, 3)), rng.uniform(0.5, 1.5, (60, 3)) * profile.cost
    centred, plain = head(catalog, center=True, scale=1.6), head(catalog)
    np.testing.assert_allclose(centred.predict(x), plain.predict(x))  # cold: the catalog either way
    observe_rated(centred, x, scores, costs, profile)
    np.testing.assert_allclose(centred.center, x.mean(axis=0))
    # The same posterior as a plain head fed (x - c) * s: centring and scaling change features, nothing else.
    observe_rated(plain, (x - x.mean(axis=0)) * 1.6, scores, costs, profile)
    new = prompts(5, seed=8) + offset
    np.testing.assert_allclose(centred.predict(new), plain.predict((new - x.mean(axis=0)) * 1.6), atol=1e-10)
    # The centre is part of the checkpoint; a state written before heads had one loads as centred at 0.
    fresh = head(catalog, center=True, scale=1.6)
    fresh.load_state_dict(centred.state_dict())
    np.testing.assert_allclose(fresh.predict(new), centred.predict(new))
    old = {k: v for k, v in plain.state_dict().items() if k != "head.center"}
    again = head(catalog)
    again.load_state_dict(old)
    assert not again.center.any()
    with pytest.raises(ValueError, match="head.center has shape"):
        fresh.load_state_dict({**centred.state_dict(), "head.center": np.zeros(DIM + 1)})
    with pytest.raises(ValueError, match="can no longer move"):  # statistics are kept in phi's coordinates
        centred.set_center(np.zeros(DIM))
    with pytest.raises(ValueError, match="finite"):
        head(catalog).set_center(np.full(DIM, np.nan))


def typed_prompts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n prompts of two well-apart types (noise around two directions) and each prompt's type."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(2, size=n)
    x = np.eye(DIM)[kind * 3] + 0.1 * rng.normal(size=(n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True), kind


def test_kmeans_finds_well_apart_groups_and_is_seeded():
    x, kind = typed_prompts(80)
    centroids = kmeans(x, 2, seed=0)
    nearest = ((x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert len(set(zip(nearest.tolist(), kind.tolist()))) == 2  # each group is one cluster
    np.testing.assert_array_equal(kmeans(x, 2, seed=0), centroids)


def test_prompt_types_are_fitted_on_the_rating_table_and_checkpointed(catalog):
    profile = ExpertProfile(catalog)
    x, kind = typed_prompts(60)
    rng = np.random.default_rng(2)
    scores, costs = (rng.random((60, 3)) < 0.5).astype(float), np.tile(profile.cost, (60, 1))
    typed = head(catalog, clusters=2, cluster_scale=4.0)
    assert typed.dim == DIM + 2 + 1 and not typed.has_prototypes
    np.testing.assert_array_equal(typed.phi(x)[:, DIM : DIM + 2], 0.0)  # no types before a rating table
    observe_rated(typed, x, scores, costs, profile)
    block = typed.phi(x)[:, DIM : DIM + 2]
    assert sorted(np.unique(block).tolist()) == [0.0, 4.0] and (block.sum(axis=1) == 4.0).all()  # one type each
    assert len(set(zip(block.argmax(axis=1).tolist(), kind.tolist()))) == 2
    np.testing.assert_array_equal(typed.phi(x)[:, -1], 1.0)  # the constant stays last (rebased_residuals)
    # The types are head state: a checkpoint carries them, and they no longer move once outcomes are observed.
    fresh = head(catalog, clusters=2, cluster_scale=4.0)
    fresh.load_state_dict(typed.state_dict())
    new = typed_prompts(6, seed=5)[0]
    np.testing.assert_allclose(fresh.predict(new), typed.predict(new))
    np.testing.assert_allclose(fresh.posterior_sd(new), typed.posterior_sd(new))
    with pytest.raises(ValueError, match="prompt types are fixed"):
        typed.fit_prototypes(x)
    with pytest.raises(ValueError, match="head.prototypes holds non-finite"):  # a corrupt checkpoint
        fresh.load_state_dict({**typed.state_dict(), "head.prototypes": np.full((2, DIM), np.nan)})
    with pytest.raises(KeyError, match="missing head.prototypes"):
        fresh.load_state_dict({k: v for k, v in typed.state_dict().items() if k != "head.prototypes"})
    # Fewer distinct prompts than types: one type each, and the spare types never match a prompt.
    small = head(catalog, clusters=5)
    small.fit_prototypes(x[[0, 1, 1]])
    assert small.has_prototypes and set(small.phi(x)[:, DIM : DIM + 5].argmax(axis=1)) <= {0, 1}
    with pytest.raises(ValueError, match="finite embeddings"):
        head(catalog, clusters=2).fit_prototypes(np.full((4, DIM), np.nan))
    assert "head.prototypes" not in head(catalog).state_dict()  # a head without types keeps its old state


def test_prompt_types_learn_a_kind_of_prompt_from_fewer_outcomes(catalog):
    """'fair' is right on every prompt of type 1 and wrong on type 0, 'good' the reverse: after 20 outcomes each, the
    typed head's quality estimates per type are near the truth, while the plain head's are still shrunk towards the
    catalog (ridge 30 spread over the embedding's directions)."""
    rating = typed_prompts(40, seed=1)[0]
    served, kind = typed_prompts(20, seed=2)
    heads = {"typed": head(catalog, ridge=30.0, clusters=2), "plain": head(catalog, ridge=30.0)}
    heads["typed"].fit_prototypes(rating)
    for h in heads.values():
        for j in (0, 1):
            q = (kind == j).astype(float)
            h.observe(served, np.full(20, j), np.stack([q, np.zeros(20), np.zeros(20), np.zeros(20)], 1))
    new, new_kind = typed_prompts(200, seed=3)
    truth = np.stack([new_kind == 0, new_kind == 1], axis=1).astype(float)
    error = {name: np.abs(h.predict(new)[:, :2, 0] - truth).mean() for name, h in heads.items()}
    assert error["typed"] < 0.2 < 0.3 < error["plain"], error


def test_statistics_kept_around_another_catalog_are_rebased_onto_this_ones(catalog):
    """A rating table observed under the table's catalog, loaded by a router whose catalog has other figures, is
    the same evidence read against the router's prior: as if the router's head had observed it."""
    profile = ExpertProfile(catalog)
    other = ExpertCatalog(experts=[spec("good", 0.004, 0.9), spec("fair", 0.001, 0.3), spec("poor", 0.002, 0.2)])
    rng = np.random.default_rng(5)
    x = prompts(30) + 0.4
    scores, costs = (rng.random((30, 3)) < 0.5).astype(float), rng.uniform(0.5, 1.5, (30, 3)) * profile.cost
    for config in ({"ridge": 3.0}, {"ridge": 3.0, "center": True, "scale": 1.6}, {"features": 4, "ridge": 2.0}):
        theirs = BayesianOutcomeHead(ExpertProfile(other), DIM, OutcomeHeadConfig(**config))
        observe_rated(theirs, x, scores, costs, profile)
        direct = head(catalog, **config)
        observe_rated(direct, x, scores, costs, profile)
        loaded = head(catalog, **config)
        loaded.load_state_dict(theirs.state_dict())
        new = prompts(8, seed=6) + 0.4
        np.testing.assert_allclose(loaded.predict(new), direct.predict(new), atol=1e-8)
        np.testing.assert_allclose(loaded.posterior_sd(new), direct.posterior_sd(new), atol=1e-10)
        assert not np.allclose(theirs.predict(new), direct.predict(new))  # the priors differ: so would the heads
    # A state written before heads recorded their prior is taken as kept around this head's.
    old = {k: v for k, v in direct.state_dict().items() if k != "head.prior"}
    again = head(catalog, features=4, ridge=2.0)
    again.load_state_dict(old)
    np.testing.assert_allclose(again.predict(new), direct.predict(new))
    with pytest.raises(ValueError, match="non-finite"):
        again.load_state_dict({**direct.state_dict(), "head.b": np.full_like(direct.b, np.nan)})


@pytest.mark.parametrize("name", ["rl", "moe"])
def test_a_checkpoint_records_its_heads_layout_and_another_layout_refuses_it(catalog, name, tmp_path):
    config = {"embedding_dim": DIM, "hidden": [8], "head": {"ridge": 30.0, "scale": 1.6}, "network_weight": 0.0}
    strategy = build_strategy(name, catalog, config)
    strategy.observe([Experience(embedding=e, expert=1, reward=1.0, quality=1.0) for e in prompts(20)])
    strategy.save(tmp_path / "rated")
    meta = strategy.load(tmp_path / "rated")
    assert meta["head"] == {"embedding_dim": DIM, "features": 0, "projection_seed": None, "scale": 1.6, "ridge": 30.0}
    same = build_strategy(name, catalog, {**config, "head": {"ridge": 30.0, "scale": 1.6, "blend": "evidence"}})
    same.load(tmp_path / "rated")  # blend (and center) do not change what the statistics mean
    np.testing.assert_allclose(same.head.count, [0, 20, 0])
    other = build_strategy(name, catalog, {**config, "head": {"ridge": 10.0, "scale": 1.6}})
    with pytest.raises(CheckpointError, match=r"another layout .*ridge: checkpoint 30.0, router 10.0"):
        other.load(tmp_path / "rated")


@pytest.mark.parametrize("name", ["rl", "moe"])
def test_strategies_route_on_the_head_observe_once_and_round_trip_it(catalog, name):
    config = {"embedding_dim": DIM, "hidden": [8], "head": {"ridge": 1.0}, "network_weight": 0.0}
    strategy = build_strategy(name, catalog, config)
    ctx = [RouteContext(text="", embedding=e) for e in prompts(4)]
    assert {d.expert for d in strategy.route_batch(ctx)} == {"good"}  # cold: the catalog's best expected utility
    bad = [Experience(embedding=e, expert=0, reward=0.0, quality=0.0) for e in prompts(50, seed=3)]
    assert strategy.observe(bad) == {"head_observed": 50.0}
    assert {d.expert for d in strategy.route_batch(ctx)} == {"fair"}  # 'good' failed everywhere: next best
    arrays = {k: v.numpy() for k, v in strategy.state_dict().items()}
    fresh = policy_copy(build_strategy(name, catalog, config), 3, arrays)
    np.testing.assert_allclose(fresh.score(ctx), strategy.score(ctx))
    plain = build_strategy(name, catalog, {k: v for k, v in config.items() if k != "head"})
    with pytest.raises(KeyError, match="head"):
        plain.load_state_dict(strategy.state_dict())
    strategy.load_state_dict(plain.state_dict())  # an offline fit without a head: the head keeps its state
    np.testing.assert_allclose(strategy.head.count, [50, 0, 0])


def test_moe_explores_with_epsilon_and_logs_the_true_probabilities(catalog):
    config = {"embedding_dim": DIM, "hidden": [8], "head": {}, "network_weight": 0.0, "epsilon": 0.3, "seed": 1}
    strategy = build_strategy("moe", catalog, config)
    decisions = strategy.route_batch([RouteContext(text="", embedding=e) for e in prompts(600)])
    for d in decisions[:5]:
        assert d.probs == pytest.approx([0.7 + 0.1, 0.1, 0.1])  # greedy 'good' w.p. 1 - eps, else uniform
    share = np.mean([d.expert != "good" for d in decisions])
    assert share == pytest.approx(0.2, abs=0.05)
    sampled = build_strategy("moe", catalog, {**config, "epsilon": 0.0, "sample_gates": True})
    d = sampled.route_batch([RouteContext(text="", embedding=prompts(1)[0])])[0]
    assert d.probs == pytest.approx(list(np.exp(list(d.scores.values()))))  # the gates themselves
    greedy = build_strategy("moe", catalog, {**config, "epsilon": 0.0})
    assert greedy.route_batch([RouteContext(text="", embedding=prompts(1)[0])])[0].probs == [1.0, 0.0, 0.0]


def test_evidence_blend_gives_the_network_full_weight_on_unseen_prompts_and_fades_it_where_outcomes_accrue(catalog):
    fixed = head(catalog, ridge=1.0)
    evidence = head(catalog, ridge=1.0, blend="evidence")
    seen = np.tile(np.eye(DIM)[0], (40, 1))  # one region of the embedding space, 40 outcomes of expert 0
    unseen = np.eye(DIM)[[3]]
    for h in (fixed, evidence):
        h.observe(seen, np.zeros(40, dtype=int), np.zeros((40, 4)))
    np.testing.assert_allclose(fixed.network_share(np.vstack([seen[:1], unseen]), 0.5), 0.5)
    share = evidence.network_share(np.vstack([seen[:1], unseen]), 0.5)
    assert share[0, 0] < 0.05  # expert 0 near its 40 outcomes: the head decides
    np.testing.assert_allclose(share[0, 1:], 0.5)  # experts with no outcomes: the network keeps its weight
    assert 0.2 < share[1, 0] <= 0.5  # an unseen prompt shares only the constant feature with them
    np.testing.assert_allclose(share[1, 1:], 0.5)


@pytest.mark.parametrize("name", ["rl", "moe"])
def test_an_evidence_blended_strategy_follows_the_head_where_it_has_seen_outcomes(catalog, name):
    config = {"embedding_dim": DIM, "hidden": [8], "head": {"ridge": 1.0, "blend": "evidence"}, "network_weight": 0.9}
    strategy = build_strategy(name, catalog, config)
    x = prompts(1)
    bad = [Experience(embedding=x[0], expert=0, reward=0.0, quality=0.0) for _ in range(200)]
    strategy.observe(bad)
    head_only = build_strategy(name, catalog, {**config, "network_weight": 0.0})
    head_only.observe(bad)
    ctx = [RouteContext(text="", embedding=x[0])]
    # Where 200 outcomes were seen, expert 0's value is (almost) the head's alone, whatever the network says (moe's
    # score is a log-softmax over every expert, so compare its utility).
    value = (lambda s: s.utility(ctx)) if name == "moe" else (lambda s: s.score(ctx))
    assert value(strategy)[0, 0] == pytest.approx(value(head_only)[0, 0], abs=0.05)
