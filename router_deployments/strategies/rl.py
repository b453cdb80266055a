"""Carbon-aware Dueling Double DQN router: Q(state, expert) is the expected multi-objective reward of a call.

State = prompt embedding + carbon_budget_left + window_left + the request's objective weights scaled to sum to one.
Scaling the weights by a positive factor scales every reward alike and keeps the best expert, so the network only
has to learn the simplex, and one policy serves every trade-off: sweeping the cost weight traces a cost-quality
curve.

Trained on a plain outcome table (routerllm train rl), each routing decision is a one-step episode (a contextual
bandit). Trained over budget windows (train_rl's --window, routerllm bench-budget), an episode is a window of
requests sharing one carbon budget: the next state is the next request with this one's carbon spent, and the TD
target bootstraps across the window with Double DQN (td_step: the online network picks the next action, the
target network values it). Serving uses the target network, the Polyak average of the online one (soft updates
with `tau`), so one noisy online batch moves the live policy only a little.

When exploiting, Q-values pay a carbon penalty that grows as the budget runs out:
    score_j = |w|_1 * Q(s)_j - carbon_penalty * tightness * carbon_norm_j,
    tightness = clip(1 - carbon_budget_left / tight_budget, 0, 1).
When exploring (epsilon > 0, online), the random expert is drawn with probability proportional to
exp(-green_exploration * tightness * carbon_norm_j): uniform with budget to spare, low-carbon when it is tight.

Online (issue 13): `head` adds a Bayesian linear head on the embedding (outcome_head.py), updated once per
experience (observe), and the exploit score becomes
    score_j = beta_j * |w|_1 * Q(s)_j + (1 - beta_j) * head utility_j - carbon penalty,
with beta_j = network_weight, or with the head's `blend: evidence` network_weight scaled down where the head has seen
outcomes (BayesianOutcomeHead.network_share), so a cold router starts at the catalog's best expected utility
instead of an untrained network's guess.
With `thompson_scale` > 0 (and a head) it explores by Thompson sampling instead (outcome_head.thompson_route): each
request's head utilities are drawn from the posterior with sd (1 - beta_j) * thompson_scale * posterior_sd,
and `epsilon` of the requests still go to the carbon-aware random expert; `probs` is the true mixture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from router_deployments.checkpoints import META_FILE, CheckpointError, experts_match, field_diff
from router_deployments.networks import DuelingQNetwork, soft_update
from router_deployments.objectives import ObjectiveWeights
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

# The state after the embedding: the budget features, then the objective weights (last, read by the linear heads).
BUDGET_FEATURES = ("carbon_budget_left", "window_left")
N_BUDGET_FEATURES = len(BUDGET_FEATURES)
N_WEIGHT_FEATURES = 4


def normalised_weights(weights: np.ndarray) -> np.ndarray:
    """Objective weights [..., 4] (quality, cost, carbon, latency) scaled to sum to one (quality-only if all 0)."""
    w = np.asarray(weights, dtype=np.float32)
    total = w.sum(axis=-1, keepdims=True)
    quality_only = np.zeros_like(w)
    quality_only[..., 0] = 1.0
    return np.where(total > 0, w / np.maximum(total, 1e-12), quality_only)


def state_features(embeddings: np.ndarray, budget_left, weights: np.ndarray, window_left=1.0) -> np.ndarray:
    """[embedding, carbon_budget_left, window_left, normalised weights]: the observation of the Q-network and of the
    envs. The budget features are fractions, clipped to [0, 1] (1, 1: a window just begun, or no budget)."""
    emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    n = len(emb)

    def column(x) -> np.ndarray:
        return np.clip(np.broadcast_to(np.asarray(x, dtype=np.float32), (n,)).reshape(n, 1), 0.0, 1.0)

    w = np.broadcast_to(normalised_weights(weights), (n, N_WEIGHT_FEATURES))
    return np.concatenate([emb, column(budget_left), column(window_left), w], axis=1).astype(np.float32)


class RLConfig(StrategyConfig):
    """Network shape, carbon awareness and online-learning settings of the DQN router."""

    embedding_dim: int = Field(384, gt=0, description="Width of the prompt embedding in the state.")
    hidden: list[int] = Field(default_factory=lambda: [256, 256], description="Hidden widths of the Q trunk.")
    batch_norm: bool = Field(False, description="BatchNorm after each hidden layer of the trunk (the seed's net).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each hidden layer (the seed's net: 0.2).")
    carbon_penalty: float = Field(0.5, ge=0, description="Q penalty per unit of carbon_norm at a spent budget.")
    tight_budget: float = Field(0.2, gt=0, le=1, description="Budget fraction below which carbon weighs in.")
    epsilon: float = Field(0.0, ge=0, le=1, description="Exploration rate when routing (0 = always exploit).")
    green_exploration: float = Field(5.0, ge=0, description="How strongly exploration prefers low carbon.")
    tau: float = Field(0.01, gt=0, le=1, description="Soft-update rate of the target (served) network.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size of online updates (learn).")
    relabel_weights: int = Field(
        4, ge=1, description="Objective-weight vectors each online outcome is replayed under (see learn)."
    )
    seed: int = Field(0, description="Seeds the initial weights, exploration and relabelling.")
    head: OutcomeHeadConfig | None = Field(None, description="Bayesian linear head on the embedding (None: none).")
    network_weight: float = Field(
        1.0, ge=0, le=1, description="Weight of the Q-network's values against the head's utility (with a head)."
    )
    thompson_scale: float = Field(
        0.0, ge=0, description="Utility noise sd of Thompson sampling from the head's posterior (0: epsilon-greedy)."
    )


class RLStrategy(RoutingStrategy):
    """Dueling Double DQN over experts with carbon-aware exploration and a carbon penalty when exploiting."""

    name = "rl"
    Config = RLConfig
    learnable = True

    def __init__(self, catalog, config=None):
        super().__init__(catalog, config)
        cfg = self.config
        self.obs_dim = cfg.embedding_dim + N_BUDGET_FEATURES + N_WEIGHT_FEATURES
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            self.online, self.target = (
                DuelingQNetwork(self.obs_dim, len(catalog), cfg.hidden, N_WEIGHT_FEATURES, cfg.batch_norm, cfg.dropout)
                for _ in range(2)
            )
        self.target.load_state_dict(self.online.state_dict())
        self.target.eval()
        self.rng = np.random.default_rng(cfg.seed)
        self.head = BayesianOutcomeHead(self.profile, cfg.embedding_dim, cfg.head) if cfg.head else None
        self._optimizer: torch.optim.Optimizer | None = None

    # --- routing ----------------------------------------------------------------------------------------
    def observations(self, contexts: list[RouteContext]) -> np.ndarray:
        """The DQN state of each request: embedding, carbon budget and window left, objective weights."""
        return state_features(
            np.stack([c.embedding for c in contexts]),
            np.array([c.carbon_budget_left for c in contexts]),
            np.stack([c.weights.as_array() for c in contexts]),
            np.array([c.window_left for c in contexts]),
        )

    def q_values(self, obs: np.ndarray, network: str = "target") -> np.ndarray:
        """Q-values [batch, n_experts] of the served (target) or the online network."""
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        if obs.shape[1] != self.obs_dim:
            raise ValueError(f"state width {obs.shape[1]} != the Q-network's input width {self.obs_dim}")
        net = self.target if network == "target" else self.online
        return _evaluate(net, torch.from_numpy(obs)).double().numpy()

    def tightness(self, budget_left: np.ndarray) -> np.ndarray:
        """0 with budget to spare, rising to 1 as the carbon budget runs out."""
        return np.clip(1.0 - np.asarray(budget_left, dtype=np.float64) / self.config.tight_budget, 0.0, 1.0)

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Q-values in reward units of each request's weights, minus the budget-dependent carbon penalty."""
        q = self.q_values(self.observations(contexts))
        scale = np.array([[c.weights.as_array().sum() or 1.0] for c in contexts])
        tight = self.tightness([c.carbon_budget_left for c in contexts])[:, None]
        value = scale * q
        if self.head is not None:
            embeddings = np.stack([c.embedding for c in contexts])
            head = self.head.utility(self.head.predict(embeddings), np.stack([c.weights.as_array() for c in contexts]))
            beta = self.head.network_share(embeddings, self.config.network_weight)
            value = beta * value + (1.0 - beta) * head
        return value - self.config.carbon_penalty * tight * self.profile.carbon_norm

    def exploration_probs(self, budget_left: np.ndarray) -> np.ndarray:
        """Distribution of the random expert [batch, n]: uniform with budget to spare, greener when tight."""
        tight = self.tightness(budget_left)[:, None]
        logits = -self.config.green_exploration * tight * self.profile.carbon_norm
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def route_batch(self, contexts: list[RouteContext]) -> list[RoutingDecision]:
        """Epsilon-greedy: exploit the adjusted Q-values, or explore toward low-carbon experts when tight."""
        scores = self.score(contexts)
        greedy = scores.argmax(axis=1)
        eps = self.config.epsilon
        explore_p = self.exploration_probs(np.array([c.carbon_budget_left for c in contexts]))
        if self.head is not None and self.config.thompson_scale > 0:
            embeddings = np.stack([c.embedding for c in contexts])
            beta = self.head.network_share(embeddings, self.config.network_weight)
            spread = (1.0 - beta) * self.config.thompson_scale * self.head.posterior_sd(embeddings)
            chosen, probs = thompson_route(scores, spread, eps, explore_p, self.rng)
            return [self._decision(s, p, [int(c)]) for s, p, c in zip(scores, probs, chosen)]
        probs = eps * explore_p
        probs[np.arange(len(contexts)), greedy] += 1.0 - eps
        decisions = []
        for s, p, g, e in zip(scores, probs, greedy, explore_p):
            explore = eps > 0 and self.rng.random() < eps
            chosen = int(self.rng.choice(len(e), p=e)) if explore else int(g)
            decisions.append(self._decision(s, p, [chosen]))
        return decisions

    # --- learning ---------------------------------------------------------------------------------------
    def td_step(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        is_weights: torch.Tensor | None = None,
        next_obs: torch.Tensor | None = None,
        dones: torch.Tensor | None = None,
        gamma: float = 0.0,
        next_allowed: torch.Tensor | None = None,
    ) -> tuple[float, np.ndarray]:
        """One gradient step of the online net toward the TD target, then a soft update of the target net.
        Returns the loss and the TD errors (for replay priorities).

        Without `next_obs` (or with gamma 0) every episode is one step and the target is the reward. With them,
        the Double DQN target below; `next_allowed` [batch, n] masks the next actions the policy may take there
        (the budget guard's affordable experts)."""
        td_target = rewards
        if next_obs is not None and gamma > 0:
            with torch.no_grad():
                online_next = _evaluate(self.online, next_obs)
                if next_allowed is not None:
                    online_next = online_next.masked_fill(~next_allowed, -torch.inf)
                next_action = online_next.argmax(1, keepdim=True)
                next_q = _evaluate(self.target, next_obs).gather(1, next_action).squeeze(1)
                not_done = 1.0 - (torch.zeros_like(rewards) if dones is None else dones.float())
                # Double DQN, the one line that differs from DQN (max_a Q_target(s')[a], which overestimates):
                # the online network picks the next action, the target network values it.
                td_target = rewards + gamma * not_done * next_q
        self.online.train()
        q = self.online(obs).gather(1, actions.long().unsqueeze(1)).squeeze(1)
        td_error = td_target - q
        w = torch.ones_like(td_error) if is_weights is None else is_weights
        loss = (w * F.smooth_l1_loss(q, td_target, reduction="none")).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        soft_update(self.target, self.online, self.config.tau)
        return loss.item(), td_error.detach().numpy()

    def learn(self, batch: list[Experience], weights: np.ndarray | None = None) -> dict[str, float]:
        """One online TD step. Each outcome is replayed under `relabel_weights` objective-weight vectors (the
        first quality-only, the rest random), its reward recomputed from its quality, cost, carbon and latency on
        the catalog's scale (relabelled_rewards), so one policy keeps serving every trade-off; `weights` (the
        replay's importance weights, one per experience) scale each experience's loss.
        `Experience.reward` is not used: it was computed under weights the experience does not record."""
        k = self.config.relabel_weights
        objectives = sample_objective_weights(self.rng, len(batch) * k)
        objectives[::k] = ObjectiveWeights().as_array()
        obs, actions, rewards = self._transitions(batch, objectives, k)
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.online.parameters(), lr=self.config.learning_rate)
        is_weights = None if weights is None else torch.from_numpy(np.repeat(weights, k).astype(np.float32))
        loss, td = self.td_step(obs, actions, rewards, self._optimizer, is_weights)
        self.policy_version += 1
        return {"loss": loss, "td_error": float(np.abs(td).mean())}

    def errors(self, batch: list[Experience]) -> np.ndarray:
        """|TD error| of each experience's one-step target under the quality-only weights (the online network)."""
        objectives = np.tile(ObjectiveWeights().as_array(), (len(batch), 1))
        obs, actions, rewards = self._transitions(batch, objectives, 1)
        with torch.no_grad():
            q = _evaluate(self.online, obs).gather(1, actions.long().unsqueeze(1)).squeeze(1)
        return np.abs((rewards - q).double().numpy())

    def _transitions(self, batch: list[Experience], objectives: np.ndarray, k: int) -> tuple[torch.Tensor, ...]:
        """(states, actions, rewards) of each experience under k objective-weight vectors each ([len * k, 4])."""
        self.check_batch(batch)

        def per_row(attr: str) -> np.ndarray:
            return np.repeat(np.array([getattr(e, attr) for e in batch], dtype=np.float64), k)

        profile = self.profile
        rewards = relabelled_rewards(
            per_row("quality"),
            per_row("cost_usd") / max(float(profile.cost.max()), 1e-12),
            per_row("carbon_g") / max(float(profile.carbon.max()), 1e-12),
            per_row("latency_s") / max(float(profile.latency.max()), 1e-12),
            objectives,
        )
        budget, window = per_row("carbon_budget_left"), per_row("window_left")
        obs = state_features(np.repeat(np.stack([e.embedding for e in batch]), k, axis=0), budget, objectives, window)
        actions = torch.from_numpy(per_row("expert").astype(np.int64))
        return torch.from_numpy(obs), actions, torch.from_numpy(rewards.astype(np.float32))

    def observe(self, experiences: list[Experience]) -> dict[str, float]:
        """Add new experiences once to the head's posterior (nothing without a head)."""
        return observe_experiences(self.head, experiences, self.profile) if self.head is not None else {}

    # --- checkpoint -------------------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """The Q-network's shape and state layout."""
        return {
            "network": "DuelingQNetwork",
            "input_dim": self.obs_dim,
            "embedding_dim": self.config.embedding_dim,
            "state": ["embedding", *BUDGET_FEATURES, "w_quality", "w_cost", "w_carbon", "w_latency"],
            "hidden": list(self.config.hidden),
            "n_actions": len(self.catalog),
            "weight_linear_heads": N_WEIGHT_FEATURES,
            "batch_norm": self.config.batch_norm,
            "dropout": self.config.dropout,
        }

    def load(self, path) -> dict[str, Any]:
        """RoutingStrategy.load, refusing a checkpoint of another architecture with the fields that differ (a
        checkpoint from before the window_left feature differs in its state and input width)."""
        meta_file = Path(path) / META_FILE
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text())
                theirs = meta.get("architecture")
                ours_to_check = meta.get("strategy") == self.name and experts_match(
                    meta, self.catalog.names, self.catalog.columns
                )
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                theirs, ours_to_check = None, False  # RoutingStrategy.load reports the broken file
            ours = self.architecture()
            # Another strategy's or catalog's checkpoint: RoutingStrategy.load says so first.
            if ours_to_check and isinstance(theirs, dict) and theirs != ours:
                raise CheckpointError(
                    f"checkpoint {path} has another rl architecture than this router ({field_diff(theirs, ours)}); "
                    "retrain it with `routerllm train rl`, or configure the router as the checkpoint was"
                )
        return super().load(path)

    def state_dict(self) -> dict[str, Any]:
        """Online and target networks, prefixed `online.` and `target.`; the head's statistics, `head.`."""
        state = {f"online.{k}": v for k, v in self.online.state_dict().items()}
        state.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        return {**state, **(self.head.state_dict() if self.head is not None else {})}

    def load_state_dict(self, state: dict[str, Any], version: int | None = None) -> None:
        """Load both networks, and the head's statistics where the state has them (an offline fit has none: the head
        then keeps its prior); `version` becomes the policy version."""
        state, head_state = split_head_state(state)
        unknown = [k for k in state if not k.startswith(("online.", "target."))]
        if unknown or (head_state and self.head is None):
            raise KeyError(f"unexpected tensors {unknown or sorted(head_state)} in an rl state")
        if head_state:
            self.head.load_state_dict(head_state)
        for prefix, net in (("online.", self.online), ("target.", self.target)):
            net.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
        self._optimizer = None
        if version is not None:
            self.policy_version = version


def _evaluate(net: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The network's output in eval mode (BatchNorm's running statistics, no dropout), its mode restored after."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return net(obs)
    finally:
        net.train(was_training)


def relabelled_rewards(quality, cost_norm, carbon_norm, latency_norm, weights: np.ndarray) -> np.ndarray:
    """The shared routing reward (training/rewards.py, budget terms off) under normalised weights [n, 4]; kept
    here so that serving code does not import the training package (a test checks the two agree)."""
    w = normalised_weights(weights).astype(np.float64)
    return w[:, 0] * quality - w[:, 1] * cost_norm - w[:, 2] * carbon_norm - w[:, 3] * latency_norm


def sample_objective_weights(
    rng: np.random.Generator,
    n: int,
    zero_cost_prob: float = 0.2,
    other_weight_prob: float = 0.25,
    low: float = 1e-3,
    high: float = 100.0,
) -> np.ndarray:
    """Random weight vectors [n, 4] covering the trade-offs a router is asked for: quality 1; cost 0 with
    probability zero_cost_prob, else log-uniform in [low, high]; carbon and latency each nonzero (log-uniform)
    with probability other_weight_prob."""
    log_uniform = lambda: np.exp(rng.uniform(np.log(low), np.log(high), n))  # noqa: E731
    w = np.zeros((n, 4), dtype=np.float32)
    w[:, 0] = 1.0
    w[:, 1] = np.where(rng.random(n) < zero_cost_prob, 0.0, log_uniform())
    for col in (2, 3):
        w[:, col] = np.where(rng.random(n) < other_weight_prob, log_uniform(), 0.0)
    return w
