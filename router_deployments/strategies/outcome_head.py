"""A Bayesian linear head on the prompt embedding: what the online learners use to generalise to new prompts.

Per expert j, the outcomes y = [quality, cost_norm, carbon_norm, latency_norm] of a call are modelled as
    y = prior_j + theta_j^T phi(x) + noise,   phi(x) = [P^T s (x - c), t onehot(k(x)), 1],   theta_j ~ N(0, I / ridge),
with prior_j the catalog's figures of expert j (its quality prior, i.e. its mean recorded score, and its cost,
carbon and latency per typical call, on ExpertProfile's [0, 1] scale), P an optional seeded random projection of
the embedding (`features` columns; 0 keeps the embedding as it is), c a centre and s a scale. With `clusters` K > 0,
phi(x) also holds t * onehot(k(x)), the prompt's type: k(x) is the nearest of K prototypes (k-means on the first
rating table the head observes, `fit_prototypes`), t the `cluster_scale`. A cold head therefore
predicts the catalog, which routes like "always the catalog's best expected utility", and moves away per prompt only
as evidence accrues (ridge shrinkage towards the prior; LinUCB/LinTS keep the same statistics).

Sentence embeddings share a large common direction (all-MiniLM-L6-v2 on RouterBench: |mean|^2 = 0.47; cosine 0.91
within winogrande, 0.39 across tasks), which a linear kernel on the raw x spreads across tasks: what the head learns
of an expert on one task moves its estimate on every other. With `center` on, c is the mean embedding of the first
prompts the head is set up with (the rating table observe_rated adds, or an offline fit's training prompts), which
leaves prompts of different tasks nearer orthogonal; s > 1 weakens the shrinkage of the prompt-dependent part
against the intercept's. The defaults are c = 0 (center off) and s = 1.

Prompt types: 0/1 outcomes are noisy, and a regression on 384 dimensions spreads what a few hundred of them say
over many directions, so the head learns slowly that an expert is better on a whole kind of prompt (on RouterBench,
a task). The type one-hot gives each (expert, type) its own offset with prior precision ridge / t^2, which a few
dozen outcomes of that type settle, while the embedding part still moves the estimate per prompt. The prototypes
are head state like the centre (in the checkpoint, fixed once the head has observed anything); a head whose
prototypes were never fitted (no rating table) has an all-zero type block, i.e. routes as a head without types.

The posterior is kept as sufficient statistics, updated exactly once per experience (`observe`), with the
Sherman-Morrison rank-one update of each expert's covariance C_j = (ridge I + sum phi phi^T)^-1 and
b_j = sum phi (y - prior_j); the posterior mean is C_j b_j. Because the model is linear in its targets, one set of
statistics serves every objective weighting: the predicted utility under weights w is w . E[y] with the signs of
ExpertProfile.utility. `posterior_sd` is the standard deviation of theta_j^T phi(x) per unit noise (for
confidence bounds or sampling).

Thompson sampling (`thompson_route`): each request draws every expert's utility from its posterior,
    u_j ~ N(score_j, (scale * posterior_sd_j)^2)   (independent across experts, as the per-expert posteriors are),
and is routed to the argmax, so it explores only where the posterior is unsure that the top expert is best; with
`epsilon` of the requests still drawn from a fixed exploration distribution. The logged probability of the chosen
expert is the true one in closed form up to quadrature: P(a) = E_z[prod_{j != a} Phi((m_a + s_a z - m_j) / s_j)],
z ~ N(0, 1), integrated by Gauss-Hermite quadrature with THOMPSON_NODES nodes (within 0.002 of
a 400,000-draw Monte Carlo estimate on the tests' cases, spreads down to 1e-3).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from router_deployments.objectives import ExpertProfile

OUTCOMES = ("quality", "cost_norm", "carbon_norm", "latency_norm")
THOMPSON_NODES = 128


class OutcomeHeadConfig(BaseModel):
    """Shape and prior strength of the Bayesian linear head."""

    model_config = ConfigDict(extra="forbid")

    features: int = Field(0, ge=0, description="Random-projection width of the embedding (0: the embedding itself).")
    ridge: float = Field(10.0, gt=0, description="Prior precision of the per-expert weights (shrinkage to the prior).")
    seed: int = Field(0, description="Seeds the random projection.")
    center: bool = Field(
        False,
        description="Centre embeddings on the mean embedding of the first rating table the head observes "
        "(observe_rated); the centre is part of the head's state and checkpoint.",
    )
    scale: float = Field(1.0, gt=0, description="Multiplies the (centred) embedding before the regression.")
    clusters: int = Field(
        0,
        ge=0,
        description="Prompt types: k-means prototypes fitted on the first rating table the head observes "
        "(observe_rated); phi then holds a one-hot of the nearest one (0: no types).",
    )
    cluster_scale: float = Field(
        5.0, gt=0, description="Multiplies the type one-hot: a type's offset has prior precision ridge / scale^2."
    )
    blend: Literal["fixed", "evidence"] = Field(
        "fixed",
        description="How a strategy weighs its network against the head: 'fixed' gives the network network_weight "
        "everywhere; 'evidence' scales it per prompt and expert by the head's posterior variance over its prior "
        "variance (network_share), so the head takes over where it has seen outcomes.",
    )


class BayesianOutcomeHead:
    """Per-expert Bayesian ridge regression of call outcomes on the embedding, with the catalog as prior mean."""

    def __init__(self, profile: ExpertProfile, embedding_dim: int, config: OutcomeHeadConfig):
        self.config = config
        self.embedding_dim = embedding_dim
        self.prior = np.stack([profile.quality, profile.cost_norm, profile.carbon_norm, profile.latency_norm], 1)
        self.prior = self.prior.astype(np.float64)  # [n_experts, 4]
        if config.features:
            rng = np.random.default_rng(config.seed)
            self.projection = rng.standard_normal((embedding_dim, config.features)) / np.sqrt(config.features)
        else:
            self.projection = None
        self.dim = (config.features or embedding_dim) + config.clusters + 1
        self.center = np.zeros(embedding_dim)  # set once, before any observation (set_center)
        self.prototypes = np.zeros((config.clusters, embedding_dim))  # all zero until fitted (fit_prototypes)
        n = len(self.prior)
        self.cov = np.repeat(np.eye(self.dim)[None] / config.ridge, n, axis=0)  # [n, d, d]
        self.b = np.zeros((n, self.dim, len(OUTCOMES)))  # [n, d, 4]
        self.count = np.zeros(n)

    # --- features and prediction -------------------------------------------------------------------------
    def phi(self, embeddings: np.ndarray) -> np.ndarray:
        """[batch, d]: the (projected) embedding and a constant 1."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if x.shape[1] != self.embedding_dim:
            raise ValueError(f"embedding dim {x.shape[1]} != the head's input dim {self.embedding_dim}")
        types = self.prompt_types(x)
        x = (x - self.center) * self.config.scale
        if self.projection is not None:
            x = x @ self.projection
        return np.concatenate([x, types, np.ones((len(x), 1))], axis=1)

    @property
    def has_prototypes(self) -> bool:
        """Whether the prompt types are fitted (a head with `clusters` and no rating table has none)."""
        return bool(np.any(self.prototypes))

    def prompt_types(self, x: np.ndarray) -> np.ndarray:
        """[batch, clusters]: cluster_scale at each prompt's nearest prototype, 0 elsewhere (all 0 before fitting)."""
        out = np.zeros((len(x), self.config.clusters))
        if self.has_prototypes:
            nearest = nearest_prototype(x, self.prototypes)
            out[np.arange(len(x)), nearest] = self.config.cluster_scale
        return out

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Posterior mean outcomes [batch, n_experts, 4] (quality, cost_norm, carbon_norm, latency_norm)."""
        theta = np.einsum("nde,nek->ndk", self.cov, self.b)
        return self.prior[None] + np.einsum("bd,ndk->bnk", self.phi(embeddings), theta)

    def posterior_sd(self, embeddings: np.ndarray) -> np.ndarray:
        """sqrt(phi^T C_j phi) per prompt and expert [batch, n_experts]: the posterior spread per unit noise."""
        f = self.phi(embeddings)
        return np.sqrt(np.maximum(np.einsum("bd,nde,be->bn", f, self.cov, f), 0.0))

    def network_share(self, embeddings: np.ndarray, network_weight: float) -> np.ndarray:
        """The network's weight against the head per prompt and expert [batch, n_experts].

        'fixed': network_weight everywhere. 'evidence': network_weight * v_j(x) / v0(x), with v_j the head's
        posterior variance at the prompt (posterior_sd ** 2) and v0 = |phi(x)|^2 / ridge its prior variance. An
        offline network's guess is then a prior the head's evidence overrides: it keeps its full weight on prompts
        unlike any outcome seen (a task the network never trained on, say), and fades where outcomes accrue."""
        batch = len(np.atleast_2d(embeddings))
        if self.config.blend == "fixed" or network_weight == 0:
            return np.full((batch, len(self.prior)), float(network_weight))
        f = self.phi(embeddings)
        prior_var = (f * f).sum(axis=1, keepdims=True) / self.config.ridge
        ratio = self.posterior_sd(embeddings) ** 2 / prior_var
        return float(network_weight) * np.clip(ratio, 0.0, 1.0)

    @staticmethod
    def utility(outcomes: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """w_quality q - w_cost c - w_carbon g - w_latency l of outcomes [..., n, 4] under weights [..., 4]."""
        signed = np.asarray(weights, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])
        return np.einsum("...nk,...k->...n", outcomes, signed)

    # --- learning ----------------------------------------------------------------------------------------
    def set_center(self, center: np.ndarray) -> None:
        """Fix the centre c of phi (see the module docstring). Only before the first observation: the statistics
        are kept in phi's coordinates, so moving c afterwards would silently change what they mean."""
        center = np.asarray(center, dtype=np.float64)
        if center.shape != (self.embedding_dim,) or not np.isfinite(center).all():
            raise ValueError(f"a centre must be {self.embedding_dim} finite values, got shape {center.shape}")
        if self.count.sum():
            raise ValueError(f"the head has observed {int(self.count.sum())} outcomes; its centre can no longer move")
        self.center = center.copy()

    def fit_prototypes(self, embeddings: np.ndarray) -> None:
        """Fit the `clusters` prompt types on `embeddings` (seeded k-means, kmeans). Only before the first
        observation, like the centre: the statistics are kept in phi's coordinates. A table with fewer distinct
        prompts than `clusters` gives one type per distinct prompt; the rest repeat the first prototype, so that no
        prompt is ever nearest to them (nearest_prototype keeps the first of equals) and their features stay 0."""
        if self.count.sum():
            raise ValueError(f"the head has observed {int(self.count.sum())} outcomes; its prompt types are fixed")
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
        if x.shape[1] != self.embedding_dim or not len(x) or not np.isfinite(x).all():
            raise ValueError(f"prompt types are fitted on one or more finite embeddings of width {self.embedding_dim}")
        k = min(self.config.clusters, len(np.unique(x, axis=0)))
        prototypes = kmeans(x, k, self.config.seed)
        self.prototypes = np.concatenate([prototypes, np.repeat(prototypes[:1], self.config.clusters - k, axis=0)])

    def observe(self, embeddings: np.ndarray, experts: np.ndarray, outcomes: np.ndarray) -> None:
        """Add each (prompt, expert called, outcomes [4]) once to the posterior."""
        outcomes = np.atleast_2d(np.asarray(outcomes, dtype=np.float64))
        experts = np.asarray(experts, dtype=np.int64).reshape(-1)
        if len(outcomes) != len(experts) or outcomes.shape[1] != len(OUTCOMES):
            raise ValueError(f"need one outcome row of {len(OUTCOMES)} values per expert, got {outcomes.shape}")
        if not np.isfinite(outcomes).all():
            raise ValueError("outcomes must be finite")
        n = len(self.prior)
        if ((experts < 0) | (experts >= n)).any():
            raise ValueError(f"expert indices must be in [0, {n}), got {sorted(set(experts.tolist()))}")
        for f, j, y in zip(self.phi(embeddings), experts, outcomes):
            cf = self.cov[j] @ f
            self.cov[j] -= np.outer(cf, cf) / (1.0 + f @ cf)
            self.b[j] += np.outer(f, y - self.prior[j])
            self.count[j] += 1

    # --- checkpoint --------------------------------------------------------------------------------------
    def layout(self) -> dict[str, Any]:
        """What the statistics' meaning depends on besides the catalog: phi's input width, projection, scale, prompt
        types and the prior precision the covariances started from. A checkpoint records it (RoutingStrategy.save)
        and a head with another layout refuses the statistics (RoutingStrategy.load); `center` and `blend` do not
        change them."""
        cfg = self.config
        layout = {
            "embedding_dim": self.embedding_dim,
            "features": cfg.features,
            "projection_seed": cfg.seed if cfg.features else None,
            "scale": cfg.scale,
            "ridge": cfg.ridge,
        }
        if cfg.clusters:  # only then, so that checkpoints of heads without types keep their layout
            layout.update(clusters=cfg.clusters, cluster_scale=cfg.cluster_scale)
        return layout

    def state_dict(self, prefix: str = "head.") -> dict[str, Any]:
        """The sufficient statistics, the centre they are kept around, the prompt types (with `clusters`) and the
        prior their residuals are taken from, as float64 tensors."""
        types = {f"{prefix}prototypes": torch.from_numpy(self.prototypes.copy())} if self.config.clusters else {}
        return {
            **types,
            f"{prefix}center": torch.from_numpy(self.center.copy()),
            f"{prefix}prior": torch.from_numpy(self.prior.copy()),
            f"{prefix}cov": torch.from_numpy(self.cov.copy()),
            f"{prefix}b": torch.from_numpy(self.b.copy()),
            f"{prefix}count": torch.from_numpy(self.count.copy()),
        }

    def load_state_dict(self, state: dict[str, Any], prefix: str = "head.") -> None:
        """Load statistics written by state_dict; a shape that does not fit this head is a ValueError. A state
        without a centre (written before heads had one) is centred at 0, as it was fitted; one without a prior is
        taken as kept around this head's. Statistics kept around another prior (a rating table observed under the
        table's catalog, a catalog whose figures changed since) are rebased onto this head's (`rebase`): the same
        observations, read against this catalog."""
        state = {f"{prefix}center": np.zeros(self.embedding_dim), f"{prefix}prior": self.prior, **state}
        names = ("center", "prior", "cov", "b", "count") + (("prototypes",) if self.config.clusters else ())
        loaded = {}
        for name in names:
            key = f"{prefix}{name}"
            if key not in state:
                raise KeyError(f"missing {key} in the head's state")
            value = np.asarray(state[key].detach().cpu().numpy() if hasattr(state[key], "detach") else state[key])
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"{key} has shape {value.shape}, this head needs {getattr(self, name).shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"{key} holds non-finite values")
            loaded[name] = value.astype(np.float64).copy()
        self.center, self.cov, self.b, self.count = loaded["center"], loaded["cov"], loaded["b"], loaded["count"]
        self.prototypes = loaded.get("prototypes", self.prototypes)
        self.b = rebased_residuals(self.cov, self.b, loaded["prior"], self.prior, self.config.ridge)


def rebased_residuals(
    cov: np.ndarray, b: np.ndarray, old_prior: np.ndarray, new_prior: np.ndarray, ridge: float
) -> np.ndarray:
    """b of statistics kept around `old_prior`, re-expressed around `new_prior` [n, 4]: b_j = sum phi (y - p_j), so
    b_j' = b_j + (sum phi) (p_old_j - p_new_j)^T, and since phi ends in a constant 1, sum phi is the last column of
    C_j^-1 - ridge I. The posterior mean p_new + C b' is then what a head with the new prior would hold after the
    same observations: the old prior's figures do not linger where the evidence is thin."""
    delta = old_prior - new_prior
    if not np.any(delta):
        return b
    out = b.copy()
    for j in np.flatnonzero(np.any(delta != 0, axis=1)):
        phi_sum = np.linalg.inv(cov[j])[:, -1]
        phi_sum[-1] -= ridge
        out[j] += np.outer(phi_sum, delta[j])
    return out


def nearest_prototype(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Index of the nearest prototype (Euclidean; on unit embeddings the most cosine-similar) of each row of x."""
    d2 = (x * x).sum(1)[:, None] - 2.0 * x @ prototypes.T + (prototypes * prototypes).sum(1)[None]
    return d2.argmin(axis=1)


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 50) -> np.ndarray:
    """[k, dim] k-means centroids of x: k-means++ seeding from `seed`, then Lloyd's iterations until no prompt
    changes cluster (at most `iterations`). A cluster left empty keeps its centroid."""
    rng = np.random.default_rng(seed)
    centroids = [x[rng.integers(len(x))]]
    d2 = ((x - centroids[0]) ** 2).sum(1)  # squared distance of each prompt to its nearest centroid so far
    for _ in range(1, k):
        centroids.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((x - centroids[-1]) ** 2).sum(1))
    centroids = np.array(centroids)
    assigned = None
    for _ in range(iterations):
        nearest = nearest_prototype(x, centroids)
        if assigned is not None and (nearest == assigned).all():
            break
        assigned = nearest
        for j in range(k):
            if (nearest == j).any():
                centroids[j] = x[nearest == j].mean(axis=0)
    return centroids


def thompson_probs(mean: np.ndarray, spread: np.ndarray, nodes: int = THOMPSON_NODES) -> np.ndarray:
    """P(argmax_j u_j = a) for independent u_j ~ N(mean_j, spread_j^2), [batch, n] (Gauss-Hermite quadrature)."""
    mean = np.atleast_2d(np.asarray(mean, dtype=np.float64))
    s = np.maximum(np.atleast_2d(np.asarray(spread, dtype=np.float64)), 1e-9)
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    # u_a at each node [b, a, q]; Phi((u_a - m_j) / s_j) for every rival j [b, a, q, j].
    u = mean[:, :, None] + s[:, :, None] * z
    gap = (u[..., None] - mean[:, None, None, :]) / s[:, None, None, :]
    log_cdf = torch.special.log_ndtr(torch.from_numpy(gap)).numpy()
    n = mean.shape[1]
    log_cdf[:, np.arange(n), :, np.arange(n)] = 0.0  # an expert does not compete with itself
    p = np.exp(log_cdf.sum(axis=3)) @ w
    return p / p.sum(axis=1, keepdims=True)


def thompson_route(
    scores: np.ndarray, spread: np.ndarray, epsilon: float, explore: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Thompson sampling mixed with epsilon of `explore` [batch, n]: (chosen expert per request, the true
    probabilities [batch, n] of every expert being chosen)."""
    batch, n = scores.shape
    sampled = scores + spread * rng.standard_normal((batch, n))
    chosen = sampled.argmax(axis=1)
    explored = rng.random(batch) < epsilon
    for i in np.flatnonzero(explored):
        chosen[i] = rng.choice(n, p=explore[i])
    probs = (1.0 - epsilon) * thompson_probs(scores, spread) + epsilon * explore
    return chosen, probs


def experience_outcomes(batch: list, profile: ExpertProfile) -> np.ndarray:
    """[len(batch), 4] outcomes of Experiences on the head's scale: quality, and cost, carbon and latency divided by
    the catalog's largest per-call figure (the scale of ExpertProfile and of the learner's reward)."""
    cost, carbon, latency = outcome_scales(profile)
    return np.array(
        [[e.quality, e.cost_usd / cost, e.carbon_g / carbon, e.latency_s / latency] for e in batch],
        dtype=np.float64,
    )


def outcome_scales(profile: ExpertProfile) -> tuple[float, float, float]:
    """The catalog's largest per-call cost, carbon and latency: the head's units for each (ExpertProfile's scale)."""
    return tuple(max(float(x.max()), 1e-12) for x in (profile.cost, profile.carbon, profile.latency))


def observe_experiences(head: BayesianOutcomeHead, batch: list, profile: ExpertProfile) -> dict[str, float]:
    """Add new Experiences once to `head` (what a strategy's observe() does); returns {"head_observed": n}."""
    if not batch:
        return {}
    head.observe(np.stack([e.embedding for e in batch]), [e.expert for e in batch], experience_outcomes(batch, profile))
    return {"head_observed": float(head.count.sum())}


def observe_rated(
    head: BayesianOutcomeHead, embeddings: np.ndarray, scores: np.ndarray, costs: np.ndarray, profile: ExpertProfile
) -> dict[str, float]:
    """Add a rating benchmark to `head`: every expert's recorded outcome on every prompt (full information).

    What an operator measured before serving (a RouterBench-style table of its experts: scores and USD costs
    [n_prompts, n_experts], prompts embedded [n_prompts, dim]); the head's posterior then starts from those outcomes
    per prompt instead of the catalog's means alone, the way PILOT starts its LinUCB from an offline preference prior
    and vLLM Semantic Router seeds its Beta posteriors with offline quality. Carbon and latency are recorded per
    call by no such table: they stay at the catalog's figures (no residual). A fresh head with `center` on is
    centred on these prompts' mean embedding first, and one with `clusters` fits its prompt types on them.
    Returns {"head_observed": n}."""
    scores, costs = np.asarray(scores, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    n_prompts, n_experts = scores.shape
    if costs.shape != scores.shape or len(embeddings) != n_prompts or n_experts != len(head.prior):
        raise ValueError(
            f"a rating table needs scores and costs [prompts, {len(head.prior)} experts] and one embedding per prompt, "
            f"got scores {scores.shape}, costs {costs.shape}, {len(embeddings)} embeddings"
        )
    cost_scale = outcome_scales(profile)[0]
    if head.config.center and not head.count.sum():
        head.set_center(np.asarray(embeddings, dtype=np.float64).mean(axis=0))
    if head.config.clusters and not head.count.sum():
        head.fit_prototypes(embeddings)
    for j in range(n_experts):
        outcomes = np.stack(
            [
                scores[:, j],
                costs[:, j] / cost_scale,
                np.full(n_prompts, profile.carbon_norm[j]),
                np.full(n_prompts, profile.latency_norm[j]),
            ],
            axis=1,
        )
        head.observe(embeddings, np.full(n_prompts, j), outcomes)
    return {"head_observed": float(head.count.sum())}


def split_head_state(state: dict[str, Any], prefix: str = "head.") -> tuple[dict[str, Any], dict[str, Any]]:
    """(the network's tensors, the head's tensors) of a strategy's state dict."""
    head = {k: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith(prefix)}, head
