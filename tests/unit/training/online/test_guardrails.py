"""The publish checks (training/online/guardrails.py); the learner's use of them is in test_learner.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from router_deployments.strategies import Experience
from training.online.guardrails import below_margin, compare_policies, dr_compare, non_finite_weights, snips_estimates
from training.online.outcome_store import OutcomeRecord


def test_non_finite_weights_names_the_floating_tensors_with_nan_or_inf():
    state = {
        "a": torch.zeros(2),
        "b": torch.tensor([1.0, float("nan")]),
        "c": torch.tensor([float("-inf")]),
        "steps": torch.tensor([3]),
    }
    assert non_finite_weights(state) == ["b", "c"]
    assert non_finite_weights({"a": torch.ones(3)}) == []


class Always:
    """A strategy stand-in whose greedy choice is always one expert."""

    def __init__(self, expert: int):
        self.expert = expert

    def score(self, contexts):
        out = np.zeros((len(contexts), 2))
        out[:, self.expert] = 1.0
        return out


def held_back(expert: int, reward: float, probs: list[float] | None) -> tuple[Experience, OutcomeRecord]:
    record = OutcomeRecord(
        request_id=f"r{expert}{reward}", strategy="rl", expert="x", embedding=np.ones(2), probs=probs
    )
    experience = Experience(embedding=np.ones(2), expert=expert, reward=reward, quality=reward)
    return experience, record


def test_snips_weights_agreeing_choices_by_their_inverse_propensity():
    holdback = [held_back(0, 1.0, [0.5, 0.5]), held_back(0, 0.0, [0.1, 0.9]), held_back(1, 1.0, None)]
    estimate = snips_estimates(Always(0), Always(1), holdback, 2, min_propensity=0.2, min_matches=1)
    # Expert 0 agrees with rows 0 and 1; row 1's probability 0.1 is clipped to 0.2: (2 * 1 + 5 * 0) / (2 + 5).
    assert estimate["candidate"] == pytest.approx(2 / 7) and estimate["candidate_matches"] == 2
    assert estimate["live"] == 1.0 and estimate["live_matches"] == 1  # no probs: weight 1
    assert estimate["n"] == 3 and estimate["checked"]
    assert not snips_estimates(Always(0), Always(1), holdback, 2, 0.2, min_matches=2)["checked"]
    assert snips_estimates(Always(0), Always(1), [], 2, 0.2, 1) == {"checked": False, "n": 0}


def test_below_margin_refuses_only_checked_estimates_whose_upper_bound_is_below_minus_margin():
    assert below_margin({"checked": True, "upper_bound": -0.06}, 0.05)
    assert not below_margin({"checked": True, "upper_bound": -0.04}, 0.05)
    assert not below_margin({"checked": False, "upper_bound": None}, 0.05)


def test_compare_policies_bounds_the_difference_and_refuses_only_on_evidence():
    rng = np.random.default_rng(0)
    n = 400
    logged = rng.integers(0, 2, n)  # a uniform logging policy
    rewards = np.where(logged == 0, rng.random(n) < 0.6, rng.random(n) < 0.4).astype(float)
    args = dict(min_propensity=0.05, min_matches=20, confidence=0.9, seed=1)
    worse = compare_policies(np.ones(n), np.zeros(n), logged, rewards, np.full(n, 0.5), **args)
    assert worse["checked"] and worse["lower_bound"] < worse["difference"] < worse["upper_bound"] < 0
    assert below_margin(worse, 0.0)
    # Two policies that differ on a few prompts only: a small, uncertain difference is not evidence.
    close = np.zeros(n)
    close[:10] = 1
    near = compare_policies(close, np.zeros(n), logged, rewards, np.full(n, 0.5), **args)
    assert near["lower_bound"] < 0 < near["upper_bound"] and not below_margin(near, 0.0)
    # The bound is the same for the same seed, and a bad confidence is a clear error.
    again = compare_policies(close, np.zeros(n), logged, rewards, np.full(n, 0.5), **args)
    assert again["upper_bound"] == near["upper_bound"]
    with pytest.raises(ValueError, match="confidence"):
        compare_policies(close, np.zeros(n), logged, rewards, np.full(n, 0.5), **{**args, "confidence": 1.0})


def test_dr_bounds_see_a_worse_candidate_the_slice_rarely_logged():
    rng = np.random.default_rng(0)
    n, eps = 400, 0.05
    truth = np.array([0.6, 0.4])  # expert 1 is worse; the live policy calls expert 0 and rarely explores
    logged = np.where(rng.random(n) < eps, rng.integers(0, 2, n), 0)
    propensity = np.where(logged == 0, 1 - eps / 2, eps / 2)
    rewards = (rng.random(n) < truth[logged]).astype(float)
    direct = np.tile(truth + rng.normal(0, 0.03, 2), (n, 1))  # a slightly wrong model of the reward
    cand, live = np.ones(n, int), np.zeros(n, int)
    args = dict(min_propensity=0.01, min_matches=20, confidence=0.9, seed=1)
    dr = dr_compare(cand, live, logged, rewards, propensity, direct, **args)
    switch = dr_compare(cand, live, logged, rewards, propensity, direct, switch=0.05, **args)
    ips = compare_policies(cand, live, logged, rewards, propensity, **{**args, "min_matches": 5})
    assert dr["checked"] and dr["lower_bound"] < -0.2 < dr["upper_bound"]  # unbiased, but 1/p noisy
    assert switch["difference"] == pytest.approx(-0.2, abs=0.06) and below_margin(switch, 0.0)
    assert switch["upper_bound"] - switch["lower_bound"] < 0.5 * (ips["upper_bound"] - ips["lower_bound"])
    # The same choices: the advantage is exactly 0; too small a slice is unchecked.
    same = dr_compare(live, live, logged, rewards, propensity, direct, **args)
    assert same["difference"] == 0.0 and not below_margin(same, 0.0)
    small = dr_compare(cand[:5], live[:5], logged[:5], rewards[:5], propensity[:5], direct[:5], **args)
    assert not small["checked"] and not below_margin(small, 0.0)


class WithHead(Always):
    """Always one expert, with a head whose utility says expert 1 earns 0.8 and expert 0 earns 0.2."""

    class Head:
        def predict(self, embeddings):
            return np.zeros((len(embeddings), 2, 4))

        def utility(self, outcomes, weights):
            return np.tile([0.2, 0.8], (len(outcomes), 1))

    def __init__(self, expert: int):
        super().__init__(expert)
        self.head = self.Head()


def test_snips_estimates_use_the_candidates_head_as_the_direct_model_when_asked():
    holdback = [held_back(0, 0.2, [0.99, 0.01]) for _ in range(30)]  # expert 1 never logged
    args = dict(min_propensity=0.05, min_matches=20, confidence=0.9)
    ips = snips_estimates(WithHead(1), WithHead(0), holdback, 2, **args)
    assert not ips["checked"]  # no logged choice of the candidate's: the IPS check is skipped
    for estimator in ("dr", "switch-dr"):
        dr = snips_estimates(WithHead(1), WithHead(0), holdback, 2, estimator=estimator, **args)
        assert dr["estimator"] == "dr" and dr["checked"] and dr["difference"] == pytest.approx(0.6)
    plain = snips_estimates(Always(1), Always(0), holdback, 2, estimator="dr", **args)
    assert "estimator" not in plain  # no head: SNIPS
    with pytest.raises(ValueError, match="estimator"):
        snips_estimates(WithHead(1), WithHead(0), holdback, 2, estimator="direct", **args)
