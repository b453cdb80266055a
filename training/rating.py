"""Seed a served learner's head with a rating table: `routerllm rate STRATEGY --data TABLE --out CKPT`.

An operator who has measured its experts on a benchmark of its own (a RouterBench-style table: every expert's score
and cost on each prompt) can start the served rl or moe from those outcomes prompt by prompt instead of from the
catalog's figures alone: the rating prior `routerllm bench-online --rating-prior` measures (README, "The rating
table as a per-prompt prior"). The strategy is built exactly as the serving config builds it (its
router.strategies.<name> entry, its catalog, its embedding model), its head observes every (prompt, expert) outcome
of the table once (outcome_head.observe_rated), and the result is a checkpoint to name in that entry's
`checkpoint:`. The router and the learner then start from it; the network stays untrained (network_weight 0 keeps
it out of routing until the learner has trained it).

`--from FIT` starts from an offline fit instead (`routerllm train STRATEGY --data TABLE --out FIT`): its trained
network is kept and the head observes the table, typically the fit's own training table. That is the warm start
`routerllm bench-online` measures (its warm heads observe the rows their offline fit trained on; README, "Warm heads
that know their training rows").

This module reads the config's `experts`, `carbon`, `embedding` and `router` sections with their own typed models:
training/ does not import serve_app (ARCHITECTURE.md), whose AppConfig validates the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experts.carbon_meter import CarbonConfig
from experts.catalog import ExpertCatalog, ExpertSpec
from router_deployments.checkpoints import CheckpointError
from router_deployments.deployment_settings import EmbeddingConfig, RouterConfig
from router_deployments.strategies import RoutingStrategy, build_strategy
from router_deployments.strategies.outcome_head import observe_rated
from training.data import prepared
from training.data.embedding_cache import embed_texts
from training.data.routerbench import OutcomeTable, load_routerbench


@dataclass
class ServedSetup:
    """What a serving config says about one strategy: its catalog, its config entry and its embedding model."""

    catalog: ExpertCatalog
    strategy_config: dict[str, Any]
    embedding: EmbeddingConfig


def served_setup(config_path: str | Path, strategy: str) -> ServedSetup:
    """The catalog, router.strategies.<strategy> (without its checkpoint) and embedding settings of a config file;
    a clear ValueError when the file, the strategy or its head is missing."""
    path = Path(config_path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    router = RouterConfig.model_validate(raw.get("router") or {})
    if strategy not in router.strategies:
        raise ValueError(f"{path} does not enable {strategy!r} (router.strategies has {sorted(router.strategies)})")
    entry = {k: v for k, v in (router.strategies[strategy] or {}).items() if k != "checkpoint"}
    if not entry.get("head"):
        raise ValueError(
            f"router.strategies.{strategy} in {path} has no `head`: a rating table seeds the Bayesian head, "
            "so give it one (e.g. head: {ridge: 30, blend: evidence})"
        )
    carbon = CarbonConfig.model_validate(raw.get("carbon") or {})
    catalog = ExpertCatalog(
        experts=[ExpertSpec.model_validate(e) for e in raw.get("experts") or []],
        carbon_intensity_g_per_kwh=carbon.grid_intensity_g_per_kwh,
    )
    return ServedSetup(catalog, entry, EmbeddingConfig.model_validate(raw.get("embedding") or {}))


def rated_strategy(
    name: str, setup: ServedSetup, table: OutcomeTable, embeddings: np.ndarray, start: str | Path | None = None
) -> tuple[RoutingStrategy, dict[str, Any]]:
    """The strategy as served, its head having observed every outcome of `table` (columns in catalog order), and
    a summary: prompts, and per expert the table's mean score and cost against the catalog's figures.

    `start`: a checkpoint to load first, e.g. an offline fit from `routerllm train` (a warm start): its network is
    kept and its head, if it holds statistics, observes the table on top of them. A checkpoint of another strategy,
    catalog or layout is a ValueError naming it."""
    if table.models != setup.catalog.columns:
        raise ValueError(f"the table's columns {table.models} are not the catalog's {setup.catalog.columns}")
    strategy = build_strategy(name, setup.catalog, setup.strategy_config)
    if start is not None:
        try:
            strategy.load(start)
        except (CheckpointError, OSError) as e:
            raise ValueError(f"--from {start}: {e}") from e
    observed = observe_rated(strategy.head, embeddings, table.scores, table.costs, strategy.profile)
    experts = {
        spec.name: {
            "column": spec.column,
            "rated_quality": float(table.scores[:, j].mean()),
            "catalog_quality": float(strategy.profile.quality[j]),
            "rated_cost_usd": float(table.costs[:, j].mean()),
            "catalog_cost_usd": float(strategy.profile.cost[j]),
        }
        for j, spec in enumerate(setup.catalog.experts)
    }
    initial = f"warm from {start}" if start else "cold"
    return strategy, {
        "initial": f"{initial}, head seeded by a rating table",
        "n_prompts": len(table),
        **observed,
        "experts": experts,
    }


def rate(
    name: str,
    data: str,
    out: str,
    config_path: str | Path,
    limit: int | None = None,
    seed: int = 0,
    start: str | Path | None = None,
) -> dict[str, Any]:
    """Build `name` as `config_path` serves it (from the checkpoint `start`, if given), seed its head with the table
    at `data` (at most `limit` prompts, sampled by task), and save the checkpoint at `out`; returns the summary saved
    with it."""
    setup = served_setup(config_path, name)
    table = prepared.stratified_sample(load_routerbench(data, setup.catalog.columns), limit, seed)
    embeddings = embed_texts(table.prompts, model=setup.embedding.model, max_length=setup.embedding.max_length)
    strategy, summary = rated_strategy(name, setup, table, embeddings, start=start)
    summary = {"data": data, "config": str(config_path), "network_weight": strategy.config.network_weight, **summary}
    strategy.save(out, metrics=summary)
    return summary


_EXPERT = re.compile(r"^\s*-\s+name:\s*(?P<name>[^#]+?)\s*(#.*)?$")
_PRIOR = re.compile(r"^(?P<lead>\s+quality_prior:\s*)(?P<value>[^\s#]+)(?P<rest>\s*(#.*)?)$")


def write_quality_priors(config_path: str | Path, priors: dict[str, float], digits: int = 3) -> dict[str, tuple]:
    """Set each named expert's `quality_prior:` in the config file at `config_path` to `priors[name]` (rounded to
    `digits`), in place, keeping every other line and comment; returns {name: (old, new)}.

    The experts must be written in block style (`- name: ...` then `quality_prior: ...` on a line of its own). The
    rewritten file is parsed again before it is written: if any expert's prior did not land (another layout, a
    missing line), nothing is written and the ValueError names the experts."""
    path = Path(config_path)
    lines = path.read_text().splitlines(keepends=True)
    in_experts, current, changed = False, None, {}
    for i, line in enumerate(lines):
        if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
            in_experts, current = line.startswith("experts:"), None
            continue
        if not in_experts:
            continue
        if m := _EXPERT.match(line):
            current = str(yaml.safe_load(m["name"]))
        elif current in priors and current not in changed and (m := _PRIOR.match(line.rstrip("\n"))):
            new = round(float(priors[current]), digits)
            changed[current] = (yaml.safe_load(m["value"]), new)
            lines[i] = f"{m['lead']}{new:.{digits}f}{m['rest']}" + ("\n" if line.endswith("\n") else "")
    text = "".join(lines)
    landed = {e.get("name"): e.get("quality_prior") for e in (yaml.safe_load(text) or {}).get("experts") or []}
    missing = sorted(n for n in priors if n not in changed or landed.get(n) != changed[n][1])
    if missing:
        raise ValueError(
            f"cannot write quality_prior of {missing} in {path}: write each expert in block style with "
            "`quality_prior: <value>` on a line of its own"
        )
    path.write_text(text)
    return changed
