"""Dynamic mixture of experts: a gating network over the prompt embedding, reweighted by the objectives.

The GatingNetwork gives each expert a logit, the log-odds that it answers the prompt well, so sigmoid(logit) is
its predicted quality q_j. Training (training/trainers/train_moe.py) fits these logits to recorded qualities and adds
the load-balancing loss (squared coefficient of variation of expert importance) on noisy gates
softmax((logit + noise) / temperature), so the gate keeps exploring and no expert is starved early on.

Routing applies the multi-objective adjustment: with the request's weights (ObjectiveWeights),

    utility_j = w_quality * (q_j + quality_prior_weight * prior_j) - w_cost * cost_j - w_carbon * carbon_j
                - w_latency * latency_j
    gate_j    = softmax(utility / T)_j,  T = route_temperature
              ∝ softmax(w_quality * q' / T)_j * exp(-penalty_j / T),
    penalty_j = w_cost * cost_j + w_carbon * carbon_j + w_latency * latency_j

i.e. the quality gate reweighted by each expert's cost, carbon and latency per call (the catalog's per-token
figures at a typical request, scaled to [0, 1]). Raising the cost weight moves traffic to cheaper experts, so a
sweep over it traces a cost-quality curve. The `top_k` highest gates form the fan-out (sparse top-k gating); the
serving layer calls them and keeps the answer of the highest-weighted one.

Online (issue 13), two additions. `head` adds a Bayesian linear head on the embedding (outcome_head.py), kept as
sufficient statistics and updated once per experience (observe); the utility routed on is then
    utility_j = beta_j * gate utility_j + (1 - beta_j) * head utility_j,
with beta_j = network_weight, or with the head's `blend: evidence` network_weight scaled down where the head has seen
outcomes (BayesianOutcomeHead.network_share), so a cold router starts at the catalog's best expected utility and
moves per prompt on evidence. Exploration:
with `sample_gates` the answering expert is drawn from the gates (else the top gate), mixed with `epsilon` of
uniform choice (the learner publishes epsilon); with `thompson_scale` > 0 (and a head) the answering expert is the
argmax of utilities whose head part is drawn from the posterior (outcome_head.thompson_route). `probs` of the
decision is that true distribution, so off-policy estimates can weigh each logged choice by it.
`confidence` stays the chosen expert's gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from router_deployments.networks import GatingNetwork, load_balancing_loss, noisy_gates
from router_deployments.strategies.base import (
    Experience,
    RouteContext,
    RoutingDecision,
    RoutingStrategy,
    StrategyConfig,
)
from router_deployments.strategies.outcome_head import (
    BayesianOutcomeHead,
    OutcomeHeadConfig,
    observe_experiences,
    split_head_state,
    thompson_route,
)


class MoEConfig(StrategyConfig):
    """Network shape, gating and online-learning settings of the mixture-of-experts router."""

    embedding_dim: int = Field(384, gt=0, description="Width of the prompt embedding the gate reads.")
    hidden: list[int] = Field(default_factory=lambda: [256], description="Hidden layer widths of the gate.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout after each hidden layer (training only).")
    top_k: int = Field(1, gt=0, description="Experts in the fan-out: the k highest adjusted gates.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the gate over logits (training).")
    noise_std: float = Field(1.0, ge=0, description="Std of the exploration noise added to logits in training.")
    balance_weight: float = Field(0.01, ge=0, description="Weight of the load-balancing loss (CV^2 of importance).")
    route_temperature: float = Field(
        0.05, gt=0, description="Softmax temperature of the objective-adjusted gates (their spread, not the choice)."
    )
    quality_prior_weight: float = Field(
        0.0, ge=0, description="Weight of the catalog's per-expert quality prior added to the predicted quality."
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size of online updates (learn).")
    seed: int = Field(0, description="Seeds the initial weights, the gate noise and exploration.")
    head: OutcomeHeadConfig | None = Field(None, description="Bayesian linear head on the embedding (None: none).")
    network_weight: float = Field(
        1.0, ge=0, le=1, description="Weight of the gate's utility against the head's (with a head; 1 without)."
    )
    epsilon: float = Field(0.0, ge=0, le=1, description="Share of requests routed to a uniformly random expert.")
    sample_gates: bool = Field(False, description="Draw the answering expert from the gates instead of the top one.")
    thompson_scale: float = Field(
        0.0, ge=0, description="Utility noise sd of Thompson sampling from the head's posterior (0: no sampling)."
    )


class MoEStrategy(RoutingStrategy):
    """Sparse top-k gating over experts, with a load-balancing loss and a multi-objective gate adjustment."""

    name = "moe"
    Config = MoEConfig
    learnable = True

    def __init__(self, catalog, config=None):
        super().__init__(catalog, config)
        cfg = self.config
        if cfg.top_k > len(catalog):
            raise ValueError(f"top_k={cfg.top_k} exceeds the {len(catalog)} experts of the catalog")
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            self.net = GatingNetwork(cfg.embedding_dim, len(catalog), cfg.hidden, cfg.dropout)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.head = BayesianOutcomeHead(self.profile, cfg.embedding_dim, cfg.head) if cfg.head else None
        self._optimizer: torch.optim.Optimizer | None = None

    # --- routing ----------------------------------------------------------------------------------------
    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        """Predicted quality of every expert on each prompt: sigmoid of the gate logits, [batch, n_experts]."""
        x = self._inputs(embeddings)
        self.net.eval()
        with torch.no_grad():
            return torch.sigmoid(self.net(x)).double().numpy()

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Log of the objective-adjusted gates, [batch, n_experts] (see the module docstring)."""
        z = self.utility(contexts) / self.config.route_temperature
        return z - _logsumexp(z)

    def utility(self, contexts: list[RouteContext]) -> np.ndarray:
        """Objective-weighted utility of every expert (gate and head blended), [batch, n_experts]."""
        embeddings = np.stack([c.embedding for c in contexts])
        quality = self.predict_quality(embeddings)
        quality = quality + self.config.quality_prior_weight * self.profile.quality
        utility = np.stack([self.profile.utility(q, c.weights) for q, c in zip(quality, contexts)])
        if self.head is not None:
            weights = np.stack([c.weights.as_array() for c in contexts])
            head_utility = self.head.utility(self.head.predict(embeddings), weights)
            beta = self.head.network_share(embeddings, self.config.network_weight)
            utility = beta * utility + (1.0 - beta) * head_utility
        return utility

    def action_probs(self, gates: np.ndarray) -> np.ndarray:
        """The true probability of each expert answering [batch, n]: the gates (sample_gates) or the top gate, mixed
        with epsilon of uniform choice."""
        if self.config.sample_gates:
            p = gates / gates.sum(axis=1, keepdims=True)
        else:
            p = np.zeros_like(gates)
            p[np.arange(len(gates)), gates.argmax(axis=1)] = 1.0
        eps = self.config.epsilon
        return (1.0 - eps) * p + eps / gates.shape[1]

    def route_batch(self, contexts: list[RouteContext]) -> list[RoutingDecision]:
        """The answering expert drawn from action_probs (the top gate when nothing explores), then a fan-out of the
        next top_k - 1 experts by adjusted gate."""
        log_gates = self.score(contexts)
        gates = np.exp(log_gates)
        if self.head is not None and self.config.thompson_scale > 0:
            embeddings = np.stack([c.embedding for c in contexts])
            beta = self.head.network_share(embeddings, self.config.network_weight)
            spread = (1.0 - beta) * self.config.thompson_scale * self.head.posterior_sd(embeddings)
            uniform = np.full(gates.shape, 1.0 / gates.shape[1])
            firsts, probs = thompson_route(self.utility(contexts), spread, self.config.epsilon, uniform, self.rng)
        else:
            probs = self.action_probs(gates)
            firsts = [int(self.rng.choice(len(p), p=p)) if p.max() < 1.0 else int(p.argmax()) for p in probs]
        decisions = []
        for s, g, p, first in zip(log_gates, gates, probs, firsts):
            first = int(first)
            rest = [int(i) for i in np.argsort(-s, kind="stable") if i != first][: self.config.top_k - 1]
            decision = self._decision(s, g, [first, *rest])
            decision.probs = [float(x) for x in p]
            decisions.append(decision)
        return decisions

    # --- learning ---------------------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, quality: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """Supervised BCE of logits against observed qualities (only where mask is set) plus the weighted
        load-balancing loss of noisy dense gates. Dense, because with top-1 the sparse gate is one-hot and
        carries no gradient."""
        bce = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
        if mask is not None:
            bce = (bce * mask).sum() / mask.sum().clamp(min=1.0)
        else:
            bce = bce.mean()
        gates = noisy_gates(logits, self.config.temperature, self.config.noise_std, self.generator)
        balance = load_balancing_loss(gates)
        return {"loss": bce + self.config.balance_weight * balance, "bce": bce, "balance": balance}

    def learn(self, batch: list[Experience], weights: np.ndarray | None = None) -> dict[str, float]:
        """One online Adam step: pull each routed expert's predicted quality toward what it delivered (so
        the gate moves toward experts that did well and away from those that did not), plus load balancing;
        `weights` (the replay's importance weights, one per experience) scale each experience's error."""
        x, mask, quality = self._targets(batch)
        if weights is not None:
            mask = mask * torch.from_numpy(np.asarray(weights, dtype=np.float32)).unsqueeze(1)
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.learning_rate)
        self.net.train()
        # Dropout draws from torch's global generator, which torch seeds at random in every process: seed it from
        # the strategy's own generator, so that the same seed and the same experiences give the same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.generator)))
            terms = self.loss(self.net(x), quality, mask)
        self._optimizer.zero_grad()
        terms["loss"].backward()
        self._optimizer.step()
        self.policy_version += 1
        return {k: v.item() for k, v in terms.items()}

    def errors(self, batch: list[Experience]) -> np.ndarray:
        """|delivered quality - predicted quality| of the routed expert on each experience."""
        x, mask, quality = self._targets(batch)
        self.net.eval()
        with torch.no_grad():
            predicted = torch.sigmoid(self.net(x))
        return ((predicted - quality).abs() * mask).sum(dim=1).double().numpy()

    def _targets(self, batch: list[Experience]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeddings, one-hot mask of the routed expert, its delivered quality in that column)."""
        self.check_batch(batch)
        for e in batch:
            if not (np.isfinite(e.quality) and 0.0 <= e.quality <= 1.0):
                raise ValueError(f"experience quality must be in [0, 1], got {e.quality}")
        x = self._inputs(np.stack([e.embedding for e in batch]))
        mask = F.one_hot(torch.tensor([e.expert for e in batch]), len(self.catalog)).float()
        quality = mask * torch.tensor([e.quality for e in batch], dtype=torch.float32).unsqueeze(1)
        return x, mask, quality

    def observe(self, experiences: list[Experience]) -> dict[str, float]:
        """Add new experiences once to the head's posterior (nothing without a head)."""
        return observe_experiences(self.head, experiences, self.profile) if self.head is not None else {}

    def _inputs(self, embeddings: np.ndarray) -> torch.Tensor:
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if x.shape[1] != self.config.embedding_dim:
            raise ValueError(f"embedding dim {x.shape[1]} != the gate's input dim {self.config.embedding_dim}")
        return torch.from_numpy(x)

    # --- checkpoint -------------------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """The gating network's shape and its top_k fan-out."""
        cfg = self.config
        return {
            "network": "GatingNetwork",
            "input_dim": cfg.embedding_dim,
            "hidden": list(cfg.hidden),
            "n_experts": len(self.catalog),
            "dropout": cfg.dropout,
            "top_k": cfg.top_k,
        }

    def state_dict(self) -> dict[str, Any]:
        """The gate's tensors, prefixed `gate.`, and the head's statistics, prefixed `head.`."""
        state = {f"gate.{k}": v for k, v in self.net.state_dict().items()}
        return {**state, **(self.head.state_dict() if self.head is not None else {})}

    def load_state_dict(self, state: dict[str, Any], version: int | None = None) -> None:
        """Load the gate strictly, and the head's statistics where the state has them (an offline fit has none: the
        head then keeps its prior); `version` becomes the policy version."""
        state, head_state = split_head_state(state)
        unknown = [k for k in state if not k.startswith("gate.")]
        if unknown or (head_state and self.head is None):
            raise KeyError(f"unexpected tensors {unknown or sorted(head_state)} in a moe state")
        self.net.load_state_dict({k.removeprefix("gate."): v for k, v in state.items()}, strict=True)
        if head_state:
            self.head.load_state_dict(head_state)
        self._optimizer = None
        if version is not None:
            self.policy_version = version


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=-1, keepdims=True)
    return top + np.log(np.exp(z - top).sum(axis=-1, keepdims=True))
