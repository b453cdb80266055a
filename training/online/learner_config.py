"""What the online learner is told: `LearnerConfig` (one `learner.training` section of a deployment's YAML, see
serve_app/config.py) and `StrategyTraining` per strategy. Strict: an unknown field is an error, not a default."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from training.rewards import RewardConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class StrategyTraining(_Strict):
    """How one strategy is trained online."""

    warm_start: str | None = Field(None, description="Checkpoint directory of an offline fit; None = cold start.")
    config: dict[str, Any] = Field(default_factory=dict, description="The strategy's own config (e.g. RLConfig).")
    epsilon_start: float = Field(0.2, ge=0, le=1, description="Exploration rate published with the first version.")
    epsilon_end: float = Field(0.02, ge=0, le=1, description="Exploration rate after the decay.")
    epsilon_decay_experiences: int = Field(
        2000, ge=1, description="Experiences over which epsilon decays linearly from start to end."
    )
    train_on: Literal["all", "own"] = Field(
        "all", description="Learn from every logged outcome, or only from those this strategy routed."
    )


class ReplayConfig(_Strict):
    """How the learner samples its replay pool (the `replay` field of LearnerConfig)."""

    priority: Literal["uniform", "td"] = Field(
        "td", description="'td': by latest prediction error plus carbon efficiency; 'uniform': every one alike."
    )
    alpha: float = Field(0.6, ge=0, description="How strongly priorities skew sampling (0: uniform).")
    beta: float = Field(0.4, ge=0, le=1, description="Importance-weight correction (1: unbiased, 0: none).")
    green_weight: float = Field(0.5, ge=0, description="Weight of the carbon efficiency in the priority.")
    carbon_floor: float = Field(0.1, gt=0, description="Carbon (catalog scale) below which efficiency saturates.")
    eps: float = Field(1e-3, gt=0, description="Added to every priority so that none is zero.")


class LearnerConfig(_Strict):
    """Everything the online learner needs; one section of a deployment's YAML."""

    store_path: str = Field(description="SQLite file of the outcome store (':memory:' for benchmarks).")
    checkpoint_dir: str = Field(description="Root of the published versions: <dir>/<strategy>/v<N>/.")
    strategies: dict[str, StrategyTraining] = Field(
        default_factory=lambda: {"rl": StrategyTraining(), "moe": StrategyTraining()},
        description="Strategies to train, by registry name.",
    )
    reward: RewardConfig = Field(
        default_factory=RewardConfig,
        description="Carbon-budget terms of the reward (its w_* are not used: each request's own weights are).",
    )
    batch_size: int = Field(64, ge=1, description="Experiences per learn() call.")
    updates_per_step: int = Field(
        1, ge=1, description="learn() calls per batch_size new experiences (each one is in at least one batch)."
    )
    min_experiences: int = Field(16, ge=1, description="Replay size before the first update.")
    replay_capacity: int = Field(50_000, ge=1, description="Most recent experiences kept for replay, per strategy.")
    replay: ReplayConfig = Field(
        default_factory=ReplayConfig, description="How replay is sampled (training/online/replay.py)."
    )
    publish_every_updates: int = Field(20, ge=1, description="Try to publish after this many updates ...")
    publish_every_s: float | None = Field(30.0, gt=0, description="... or this many seconds with new updates.")
    holdback_fraction: float = Field(0.1, ge=0, lt=1, description="Share of request ids held back for evaluation.")
    holdback_size: int = Field(512, ge=1, description="Most recent held-back experiences evaluated on.")
    min_holdback_matches: int = Field(20, ge=1, description="Agreeing held-back experiences needed for the check.")
    min_propensity: float = Field(0.05, gt=0, le=1, description="Floor of logged probabilities in the estimate.")
    publish_margin: float = Field(
        0.0, ge=0, description="Refuse a candidate when its reward advantage's upper confidence bound is below -margin."
    )
    publish_estimator: Literal["snips", "dr", "switch-dr"] = Field(
        "switch-dr",
        description="Estimator of that advantage: doubly robust with the candidate's head as the direct model "
        "(guardrails.dr_compare; 'switch-dr': no residual correction on choices logged below min_propensity), or "
        "SNIPS with paired IPS bounds (also what a strategy without a head gets).",
    )
    publish_confidence: float = Field(
        0.9, gt=0, lt=1, description="Two-sided confidence of the bootstrap interval of that advantage."
    )
    feedback_ttl_s: float | None = Field(7 * 86400.0, gt=0, description="Feedback older than this is refused.")
    feedback_cap_per_key: int | None = Field(
        50,
        ge=1,
        description="Most feedbacks of one API key the learner reads per window; the rest are stored, "
        "not learned (bounds what one key can do to the live policy; None: no cap; an open graph is not capped).",
    )
    feedback_cap_window_s: float = Field(3600.0, gt=0, description="The window of feedback_cap_per_key.")
    keep_versions: int | None = Field(None, ge=2, description="Keep the newest N version directories (None: all).")
    max_fetch: int = Field(10_000, ge=1, description="Most logged experiences read per step.")
    reward_ema: float = Field(0.01, gt=0, le=1, description="Weight of each new reward in the moving average.")
    seed: int = Field(0, description="Seeds replay sampling.")
    torch_threads: int | None = Field(
        1, ge=1, description="torch threads of the learner actor's process (small networks: 1); None: torch's default."
    )
