"""Classification losses for the BERT router, selectable by name.

Every loss takes logits [batch, n_classes] and targets that are either class indices [batch] or a probability
distribution over classes [batch, n_classes] (soft labels: an expert's share of a tie for best, see
training.trainers.train_bert). With one-hot targets each loss reduces to its usual textbook form:

- `ce`: cross-entropy.
- `focal`: alpha * (1 - p_t)^gamma * CE (Lin et al. 2017); alpha=1, gamma=0 is plain CE.
- `label_smoothing`: CE against (1 - eps) * target + eps / n_classes (torch's convention); eps=0 is plain CE.
- `inter_intra`: the seed design's loss, alpha * CE + beta * inter + gamma * intra, where intra is the mean distance
  of a class's features to its centroid (averaged over the classes present in the batch) and inter is the mean
  hinge max(0, margin - ||c_a - c_b||) over pairs of class centroids. It needs the pooled features, not just logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSSES = ("ce", "focal", "label_smoothing", "inter_intra")


def target_probs(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class indices [batch] or probabilities [batch, n_classes] -> probabilities [batch, n_classes] (float)."""
    if targets.dim() == 1:
        return F.one_hot(targets.long(), n_classes).float()
    if targets.dim() != 2 or targets.shape[1] != n_classes:
        raise ValueError(f"targets must be [batch] indices or [batch, {n_classes}] probabilities, got {targets.shape}")
    return targets.float()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against hard or soft targets."""
    probs = target_probs(targets, logits.shape[1])
    return -(probs * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss: down-weights classes the model already predicts confidently (soft targets weight each class)."""
    probs = target_probs(targets, logits.shape[1])
    log_p = F.log_softmax(logits, dim=-1)
    modulating = (1.0 - log_p.exp()).clamp(min=0.0) ** gamma
    return -(alpha * probs * modulating * log_p).sum(-1).mean()


def label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy against targets mixed with the uniform distribution."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    n = logits.shape[1]
    probs = target_probs(targets, n)
    return cross_entropy(logits, (1.0 - smoothing) * probs + smoothing / n)


def class_centroids(features: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid of each class weighted by target probability [n_classes, dim], and each class's total weight."""
    mass = probs.sum(0)
    centroids = probs.T @ features / mass.clamp(min=1e-12).unsqueeze(1)
    return centroids, mass


def _norm(x: torch.Tensor) -> torch.Tensor:
    # Euclidean norm over the last axis whose gradient stays finite at zero (torch.norm's is NaN there, which a
    # one-member class or two coinciding centroids would hit).
    return x.pow(2).sum(-1).clamp(min=1e-12).sqrt()


def intra_class_loss(features: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean distance of features to their class centroid, averaged over the classes present in the batch."""
    probs = target_probs(targets, n_classes)
    centroids, mass = class_centroids(features, probs)
    present = mass > 0
    if not bool(present.any()):
        return features.sum() * 0.0
    # distances[i, k] = ||f_i - c_k||; each class averages over its members, weighted by membership.
    distances = _norm(features.unsqueeze(1) - centroids.unsqueeze(0))
    per_class = (probs * distances).sum(0) / mass.clamp(min=1e-12)
    return per_class[present].mean()


def inter_class_loss(features: torch.Tensor, targets: torch.Tensor, n_classes: int, margin: float) -> torch.Tensor:
    """Mean hinge max(0, margin - distance) over pairs of centroids of the classes present in the batch."""
    probs = target_probs(targets, n_classes)
    centroids, mass = class_centroids(features, probs)
    centroids = centroids[mass > 0]
    if len(centroids) < 2:
        return features.sum() * 0.0
    rows, cols = torch.triu_indices(len(centroids), len(centroids), offset=1)
    distances = _norm(centroids[rows] - centroids[cols])
    return F.relu(margin - distances).mean()


def inter_intra_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    features: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    margin: float = 1.0,
) -> torch.Tensor:
    """alpha * CE + beta * inter-class hinge + gamma * intra-class compactness (the seed design's weights)."""
    n = logits.shape[1]
    return (
        alpha * cross_entropy(logits, targets)
        + beta * inter_class_loss(features, targets, n, margin)
        + gamma * intra_class_loss(features, targets, n)
    )


@dataclass
class LossConfig:
    """Which loss to train with and its knobs (unused knobs are ignored by the other losses)."""

    name: str = "ce"
    """One of LOSSES."""
    focal_alpha: float = 1.0
    focal_gamma: float = 2.0
    smoothing: float = 0.1
    ii_alpha: float = 1.0
    """inter_intra: weight of the cross-entropy term."""
    ii_beta: float = 1.0
    """inter_intra: weight of the inter-class hinge between centroids."""
    ii_gamma: float = 1.0
    """inter_intra: weight of the intra-class compactness."""
    margin: float = 1.0
    """inter_intra: distance below which two class centroids are pushed apart."""

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"Invalid loss {self.name!r}. Available losses are {list(LOSSES)}")

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.name == "focal":
            return focal_loss(logits, targets, self.focal_alpha, self.focal_gamma)
        if self.name == "label_smoothing":
            return label_smoothing_loss(logits, targets, self.smoothing)
        if self.name == "inter_intra":
            return inter_intra_loss(logits, targets, features, self.ii_alpha, self.ii_beta, self.ii_gamma, self.margin)
        return cross_entropy(logits, targets)
