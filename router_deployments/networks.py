"""The torch networks of the learned routers: a gating network (moe) and a dueling Q-network (rl).

Both are small MLPs over a prompt embedding (plus, for the Q-network, budget and objective-weight features).
The same DuelingQNetwork class is trained by our own DQN loop, wrapped in RLlib's RLModule for pretraining, and
served by the rl strategy, so weights move between the three without conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(
    input_dim: int, hidden: Sequence[int], dropout: float = 0.0, batch_norm: bool = False
) -> tuple[nn.Sequential, int]:
    """Linear(-BatchNorm)-ReLU(-Dropout) layers; returns the stack and its output width."""
    layers: list[nn.Module] = []
    width = input_dim
    for size in hidden:
        layers.append(nn.Linear(width, size))
        if batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    return nn.Sequential(*layers), width


class GatingNetwork(nn.Module):
    """Prompt embedding -> one logit per expert: the log-odds that the expert answers this prompt well."""

    def __init__(self, input_dim: int, n_experts: int, hidden: Sequence[int] = (256,), dropout: float = 0.1):
        super().__init__()
        self.trunk, width = mlp(input_dim, hidden, dropout)
        self.head = nn.Linear(width, n_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-expert logits for a batch of embeddings."""
        return self.head(self.trunk(x))


def noisy_gates(
    logits: torch.Tensor,
    temperature: float = 1.0,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Dense gates softmax((logits + noise) / T); the Gaussian noise (training only) makes the gate explore."""
    if noise_std > 0:
        noise = torch.randn(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        logits = logits + noise_std * noise
    return torch.softmax(logits / max(temperature, 1e-6), dim=-1)


def top_k_gates(gates: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest gates of each row and renormalise them to sum to one (sparse gating)."""
    k = max(1, min(k, gates.shape[-1]))
    values, index = gates.topk(k, dim=-1)
    sparse = torch.zeros_like(gates).scatter(-1, index, values)
    return sparse / sparse.sum(-1, keepdim=True).clamp(min=1e-12)


def load_balancing_loss(gates: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation of expert importance (Shazeer et al. 2017): importance_j is the sum of
    expert j's gates over the batch; the loss is var(importance) / mean(importance)^2, population variance."""
    importance = gates.sum(dim=0)
    return importance.var(correction=0) / importance.mean().pow(2).clamp(min=1e-12)


class DuelingQNetwork(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a A(s, a) over a shared MLP trunk (Wang et al. 2016).

    Subtracting the mean advantage makes V and A identifiable: V is the state's value, A says how much better
    each action is than the average one.

    With n_weights > 0 the last n_weights entries of the input are the objective weights w of the request, and
    both heads are linear in them: the trunk sees only the rest of the state, the value head gives one value per
    objective plus a weight-free term (budget bonus or penalty), and V(s; w) = [w, 1] . v(s) (likewise A). The
    routing reward is linear in w, so its expectation is too: one network then serves every trade-off exactly,
    including weights it never saw in training.

    `batch_norm` and `dropout` are the seed design's trunk (BatchNorm after each hidden Linear, dropout 0.2); both
    off by default, which is the plain MLP (routerllm bench-budget measures the two against each other). With
    BatchNorm the network must be in eval mode to score single requests (the rl strategy sees to it).
    """

    def __init__(
        self,
        input_dim: int,
        n_actions: int,
        hidden: Sequence[int] = (256, 256),
        n_weights: int = 0,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not 0 <= n_weights < input_dim:
            raise ValueError(f"n_weights={n_weights} must be in [0, input_dim={input_dim})")
        self.n_actions, self.n_weights = n_actions, n_weights
        self.trunk, width = mlp(input_dim - n_weights, hidden, dropout, batch_norm)
        self.value = nn.Linear(width, n_weights + 1)
        self.advantage = nn.Linear(width, n_actions * (n_weights + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Q-values per expert: value and advantage heads, each weighted by the objective weights."""
        k = self.n_weights
        state, weights = (x[..., : x.shape[-1] - k], x[..., x.shape[-1] - k :])
        w = torch.cat([weights, torch.ones_like(state[..., :1])], dim=-1)  # [batch, k + 1]
        h = self.trunk(state)
        value = (self.value(h) * w).sum(-1, keepdim=True)
        advantage = (self.advantage(h).unflatten(-1, (self.n_actions, k + 1)) * w.unsqueeze(-2)).sum(-1)
        return dueling_q(value, advantage)


def dueling_q(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """The dueling aggregation: V [batch, 1] + A [batch, n] - mean(A) over actions."""
    return value + advantage - advantage.mean(dim=-1, keepdim=True)


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- tau * online + (1 - tau) * target (tau = 1 copies the online net).

    Floating-point buffers (BatchNorm's running statistics) are averaged the same way; integer ones (its batch
    counter) are copied."""
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)
    for mine, theirs in zip(target.buffers(), online.buffers()):
        if mine.is_floating_point():
            mine.lerp_(theirs, tau)
        else:
            mine.copy_(theirs)
