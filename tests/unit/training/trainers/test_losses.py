"""The BERT router's losses on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.trainers.losses import (
    LossConfig,
    cross_entropy,
    focal_loss,
    inter_class_loss,
    inter_intra_loss,
    intra_class_loss,
    label_smoothing_loss,
    target_probs,
)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 4, generator=g), torch.tensor([0, 1, 2, 3, 1, 0])


def test_cross_entropy_matches_torch_for_indices_and_one_hot(batch):
    logits, labels = batch
    expected = F.cross_entropy(logits, labels)
    assert torch.allclose(cross_entropy(logits, labels), expected)
    assert torch.allclose(cross_entropy(logits, F.one_hot(labels, 4).float()), expected)


def test_cross_entropy_with_soft_targets_on_a_hand_case():
    # Uniform logits over 2 classes: every class has log-probability -ln 2, whatever the target mix.
    logits = torch.zeros(1, 2)
    assert cross_entropy(logits, torch.tensor([[0.5, 0.5]])).item() == pytest.approx(math.log(2))


def test_focal_with_gamma_zero_and_alpha_one_is_cross_entropy(batch):
    logits, labels = batch
    assert torch.allclose(focal_loss(logits, labels, alpha=1.0, gamma=0.0), cross_entropy(logits, labels))
    soft = torch.softmax(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), -1)
    assert torch.allclose(focal_loss(logits, soft, alpha=1.0, gamma=0.0), cross_entropy(logits, soft))


def test_focal_down_weights_by_one_minus_p_to_the_gamma():
    # p_t = 0.5: focal = alpha * 0.5^gamma * ln 2.
    logits, labels = torch.zeros(1, 2), torch.tensor([1])
    assert focal_loss(logits, labels, alpha=0.5, gamma=2.0).item() == pytest.approx(0.5 * 0.25 * math.log(2))


def test_label_smoothing_zero_is_cross_entropy_and_matches_torch_otherwise(batch):
    logits, labels = batch
    assert torch.allclose(label_smoothing_loss(logits, labels, 0.0), cross_entropy(logits, labels))
    assert torch.allclose(
        label_smoothing_loss(logits, labels, 0.2), F.cross_entropy(logits, labels, label_smoothing=0.2)
    )
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothing_loss(logits, labels, 1.0)


def test_intra_class_loss_on_a_hand_case():
    # Class 0: (0,0) and (2,0) around centroid (1,0), distances 1 and 1. Class 1: one point, distance 0.
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1])
    assert intra_class_loss(features, labels, 3).item() == pytest.approx(0.5, abs=1e-5)


def test_inter_class_loss_is_a_hinge_on_centroid_distance():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 3.0]])  # centroids (1,0) and (4,3): distance sqrt(18)
    labels = torch.tensor([0, 0, 1])
    assert inter_class_loss(features, labels, 3, margin=1.0).item() == 0.0
    assert inter_class_loss(features, labels, 3, margin=10.0).item() == pytest.approx(10 - math.sqrt(18), abs=1e-5)
    # One class in the batch: no pair, no loss.
    assert inter_class_loss(features, torch.zeros(3, dtype=torch.long), 3, margin=10.0).item() == 0.0


def test_inter_intra_combines_its_terms_with_alpha_beta_gamma():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 3.0]])
    labels = torch.tensor([0, 0, 1])
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    ce = cross_entropy(logits, labels).item()
    inter = 10 - math.sqrt(18)
    total = inter_intra_loss(logits, labels, features, alpha=2.0, beta=0.5, gamma=3.0, margin=10.0).item()
    assert total == pytest.approx(2.0 * ce + 0.5 * inter + 3.0 * 0.5, abs=1e-4)  # intra: (1 + 0) / 2 classes
    # With beta = gamma = 0 it is alpha * CE.
    assert inter_intra_loss(logits, labels, features, 1.0, 0.0, 0.0).item() == pytest.approx(ce)


def test_inter_intra_gradients_stay_finite_on_degenerate_batches():
    features = torch.ones(4, 3, requires_grad=True)  # every centroid coincides; one-member classes
    logits = torch.zeros(4, 4, requires_grad=True)
    loss = inter_intra_loss(logits, torch.tensor([0, 1, 2, 3]), features)
    loss.backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(logits.grad).all()


def test_soft_targets_weight_centroids_by_membership():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    hard = intra_class_loss(features, torch.tensor([0, 0]), 2)
    soft = intra_class_loss(features, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), 2)
    assert torch.allclose(hard, soft)


def test_loss_config_dispatches_and_rejects_unknown_names(batch):
    logits, labels = batch
    features = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(LossConfig("ce")(logits, labels, features), cross_entropy(logits, labels))
    assert torch.allclose(LossConfig("focal", focal_gamma=0.0)(logits, labels, features), cross_entropy(logits, labels))
    assert torch.allclose(
        LossConfig("label_smoothing", smoothing=0.0)(logits, labels, features), cross_entropy(logits, labels)
    )
    assert LossConfig("inter_intra")(logits, labels, features).item() > cross_entropy(logits, labels).item()
    with pytest.raises(ValueError, match="Available losses"):
        LossConfig("hinge")


def test_target_probs_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="targets"):
        target_probs(torch.zeros(2, 3), 4)
