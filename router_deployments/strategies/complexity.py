"""Complexity router: an off-the-shelf question-complexity classifier decides how big an expert a prompt needs.

Default model: `grahamaco/question-complexity-classifier` (DistilBERT, two labels). Its config names no labels, so
the pipeline reports `LABEL_0` (simple) and `LABEL_1` (complex), as the seed design read them; `label_aliases`
renames raw labels, and models whose labels already read `simple`/`complex` (any case) need no alias.

Each complexity label maps to one expert (`experts`, validated against the catalog at setup). The seed mapping:
simple -> the middle expert by size (for 70B/34B/13B/7B: the 13B, the seed design's "class 2"), complex -> the
largest. Scores: the label probabilities are summed onto their experts (experts no label maps to get 0) and read as
quality estimates, then the ExpertProfile utility applies the request's weights, so cost or carbon weight moves
borderline prompts to the cheaper mapped expert. A model that cannot be loaded fails setup(); there is no fallback.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from router_deployments.encoder import pick_device
from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig

DEFAULT_COMPLEXITY_MODEL = "grahamaco/question-complexity-classifier"


class ComplexityModelError(RuntimeError):
    """The complexity classifier could not be loaded, or its labels do not fit the configured mapping."""


class ComplexityConfig(StrategyConfig):
    """Which classifier, how its labels read, and which expert each complexity level goes to."""

    model: str = Field(
        DEFAULT_COMPLEXITY_MODEL,
        description="Hub id, local directory or 'packaged:<name>' of a text-classification model.",
    )
    label_aliases: dict[str, str] = Field(
        default_factory=lambda: {"LABEL_0": "simple", "LABEL_1": "complex"},
        description="Raw model label -> complexity name. Labels without an alias keep their own name (lower-cased).",
    )
    experts: dict[str, str] | None = Field(
        None,
        description="Complexity name -> expert name. None: simple -> the middle expert by params_b, complex -> "
        "the largest.",
    )
    max_length: int = Field(
        128, ge=8, description="Tokens per prompt (the hub model was trained on 128); keeps the end."
    )
    device: str = Field("auto", description="'auto' picks cuda when available, else cpu.")
    batch_size: int = Field(32, gt=0)


def seed_mapping(catalog) -> dict[str, str]:
    """simple -> the middle expert by parameter count (the smaller middle one when even), complex -> the largest."""
    by_size = sorted(catalog.experts, key=lambda e: e.params_b, reverse=True)
    return {"simple": by_size[len(by_size) // 2].name, "complex": by_size[0].name}


class ComplexityStrategy(RoutingStrategy):
    """Routes by predicted question complexity: label probabilities spread over experts, then weighted utility."""

    name = "complexity"
    Config = ComplexityConfig
    runs_model = True

    def __init__(self, catalog, config=None):
        super().__init__(catalog, config)
        self.pipeline = None
        self.mapping = dict(self.config.experts) if self.config.experts is not None else seed_mapping(catalog)
        self.label_to_expert: dict[str, int] = {}

    def setup(self) -> None:
        """Validate the mapping against the catalog, load the classifier, and match its labels to the mapping."""
        self._check_experts()
        self.pipeline = self._load_pipeline()
        self.label_to_expert = self._match_labels(self.pipeline.model.config.id2label.values())
        super().setup()

    def _check_experts(self) -> None:
        unknown = {label: e for label, e in self.mapping.items() if e not in self.catalog.names}
        if unknown:
            raise ValueError(
                f"complexity router maps labels to unknown experts {unknown}. "
                f"Available experts are {self.catalog.names}"
            )

    def _load_pipeline(self):
        from transformers import AutoTokenizer, pipeline

        from experts.packaged_models import resolve_model

        try:
            path = resolve_model(self.config.model)
            tokenizer = AutoTokenizer.from_pretrained(path, truncation_side="left")
            return pipeline(
                "text-classification", model=path, tokenizer=tokenizer, device=pick_device(self.config.device)
            )
        except (OSError, ValueError, KeyError) as e:
            raise ComplexityModelError(
                f"cannot load the complexity classifier {self.config.model!r}: {str(e).rstrip('.')}. Set `model` to "
                "a hub id (needs the hub or its cache) or a local directory of a text-classification model."
            ) from e

    def _complexity_name(self, label: str) -> str:
        return self.config.label_aliases.get(label, label).lower()

    def _match_labels(self, labels) -> dict[str, int]:
        """Raw model label -> expert index; every label must be mapped and every mapping key must be a label."""
        mapping = {k.lower(): v for k, v in self.mapping.items()}
        names = {label: self._complexity_name(label) for label in labels}
        unmapped = sorted(label for label, name in names.items() if name not in mapping)
        unused = sorted(set(mapping) - set(names.values()))
        if unmapped or unused:
            raise ComplexityModelError(
                f"model {self.config.model!r} has labels {names} (raw -> name), but `experts` maps {self.mapping}: "
                f"unmapped labels {unmapped}, mapped names the model lacks {unused}. Fix `experts` or `label_aliases`."
            )
        return {label: self.catalog.index(mapping[name]) for label, name in names.items()}

    def label_probabilities(self, texts: list[str]) -> list[dict[str, float]]:
        """Probability of every raw model label, one dict per text."""
        if self.pipeline is None:
            raise RuntimeError("the complexity router is not set up: call setup() first")
        results = self.pipeline(
            list(texts),
            top_k=None,
            function_to_apply="softmax",
            truncation=True,
            max_length=self.config.max_length,
            batch_size=self.config.batch_size,
        )
        return [{r["label"]: float(r["score"]) for r in result} for result in results]

    def predict_quality(self, texts: list[str]) -> np.ndarray:
        """Label probabilities summed onto their experts: [len(texts), n_experts]."""
        quality = np.zeros((len(texts), len(self.catalog)), dtype=np.float32)
        for row, probs in zip(quality, self.label_probabilities(texts)):
            for label, p in probs.items():
                row[self.label_to_expert[label]] += p
        return quality

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Utility of each expert from the quality the complexity labels imply."""
        quality = self.predict_quality([c.text for c in contexts])
        return np.stack([self.profile.utility(q, c.weights, break_ties=True) for q, c in zip(quality, contexts)])

    def architecture(self) -> dict[str, Any]:
        """The classifier and the label-to-expert mapping."""
        return {"model": self.config.model, "experts": self.mapping}
