"""Complexity router: a local two-label classifier stands in for the hub model; mapping, weights and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experts.catalog import ExpertCatalog, ExpertSpec, ReplayBackendConfig
from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext, build_strategy
from router_deployments.strategies.complexity import (
    DEFAULT_COMPLEXITY_MODEL,
    ComplexityConfig,
    ComplexityModelError,
    ComplexityStrategy,
    seed_mapping,
)
from tests.tiny_bert import save_tiny_bert

# The seed design's 70B / 34B / 13B / 7B shape, most expensive first.
SEED4 = [("llama-70b", 70.0, 0.9), ("codellama-34b", 34.0, 0.8), ("wizard-13b", 13.0, 0.3), ("mistral-7b", 7.0, 0.2)]
TEXTS = ["What is 2 + 2?", "Prove that there are infinitely many primes and discuss the history of the proof.", "Hi"]


def make_catalog() -> ExpertCatalog:
    return ExpertCatalog(
        experts=[
            ExpertSpec(
                name=name,
                backend=ReplayBackendConfig(data="", model=name),
                params_b=size,
                price_in_per_1k=price,
                price_out_per_1k=price,
                energy_per_token_j=size * 0.05,
                expected_latency_s=1.0,
                quality_prior=0.5,
            )
            for name, size, price in SEED4
        ]
    )


def _save_classifier(out: Path, id2label: dict[int, str] | None, complex_bias: float) -> str:
    """A 2-layer BERT classifier with MiniLM's tokenizer; the head bias sets how often it says 'complex'."""
    labels = {} if id2label is None else {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    return save_tiny_bert(out, classifier=True, num_labels=2, head_bias=[0.0, complex_bias], **labels)


@pytest.fixture(scope="session")
def hub_like_model(tmp_path_factory) -> str:
    """Like grahamaco/question-complexity-classifier: no label names, so LABEL_0 / LABEL_1."""
    return _save_classifier(tmp_path_factory.mktemp("complexity_hub_like"), None, complex_bias=0.0)


@pytest.fixture(scope="session")
def named_model(tmp_path_factory) -> str:
    """Labels already named (upper case), leaning 'complex'."""
    return _save_classifier(tmp_path_factory.mktemp("complexity_named"), {0: "SIMPLE", 1: "COMPLEX"}, 3.0)


def make_router(model: str, **config) -> ComplexityStrategy:
    router = ComplexityStrategy(make_catalog(), ComplexityConfig(model=model, device="cpu", **config))
    router.setup()
    return router


def contexts(texts: list[str], weights: ObjectiveWeights | None = None) -> list[RouteContext]:
    return [
        RouteContext(text=t, embedding=np.zeros(3, np.float32), weights=weights or ObjectiveWeights()) for t in texts
    ]


def test_seed_mapping_sends_simple_to_the_middle_expert_and_complex_to_the_largest():
    assert seed_mapping(make_catalog()) == {"simple": "wizard-13b", "complex": "llama-70b"}
    assert ComplexityConfig().model == DEFAULT_COMPLEXITY_MODEL


def test_label_probabilities_spread_over_the_mapped_experts(hub_like_model):
    router = make_router(hub_like_model)
    assert router.label_to_expert == {"LABEL_0": 2, "LABEL_1": 0}
    quality = router.predict_quality(TEXTS)
    assert quality.shape == (3, 4)
    assert np.allclose(quality.sum(1), 1.0, atol=1e-5)
    assert np.all(quality[:, [1, 3]] == 0.0)  # no label maps to these experts
    labels = router.label_probabilities(TEXTS)
    assert np.allclose(quality[:, 0], [p["LABEL_1"] for p in labels], atol=1e-6)
    scores = router.score(contexts(TEXTS))
    assert scores.shape == (3, 4)
    assert set(scores.argmax(1)) <= {0, 2}


def test_named_labels_and_a_custom_mapping(named_model):
    router = make_router(named_model, experts={"simple": "mistral-7b", "complex": "codellama-34b"})
    assert router.label_to_expert == {"SIMPLE": 3, "COMPLEX": 1}
    # The head leans 'complex' (bias 3): default weights pick the complex expert.
    assert [d.expert for d in router.route_batch(contexts(TEXTS))] == ["codellama-34b"] * 3


def test_cost_weight_moves_choices_to_cheaper_experts(named_model):
    router = make_router(named_model)
    costs = router.profile.cost
    spent = [costs[router.score(contexts(TEXTS, ObjectiveWeights(cost=w))).argmax(1)].sum() for w in (0, 0.5, 1, 5)]
    assert spent[0] == pytest.approx(3 * costs[0])  # all to the largest
    assert all(later <= earlier + 1e-9 for earlier, later in zip(spent, spent[1:]))
    assert spent[-1] < spent[0]


def test_long_prompts_are_truncated_not_rejected(hub_like_model):
    router = make_router(hub_like_model, max_length=32)
    shared_prefix = "Example question and answer. " * 300
    quality = router.predict_quality([shared_prefix + "What is 2 + 2?", "filler " * 300 + "What is 2 + 2?"])
    assert np.allclose(quality[0], quality[1], atol=1e-5)  # only the end is read


def test_mapping_to_an_unknown_expert_lists_the_catalog(hub_like_model):
    router = ComplexityStrategy(make_catalog(), ComplexityConfig(model=hub_like_model, experts={"simple": "gpt-5"}))
    with pytest.raises(ValueError, match="Available experts are .*llama-70b"):
        router.setup()


def test_labels_the_mapping_does_not_cover_are_errors(hub_like_model, named_model):
    with pytest.raises(ComplexityModelError, match="unmapped labels"):
        make_router(hub_like_model, experts={"simple": "mistral-7b"})
    with pytest.raises(ComplexityModelError, match="the model lacks"):
        make_router(named_model, experts={"simple": "mistral-7b", "complex": "llama-70b", "medium": "wizard-13b"})
    # Without the default aliases the hub-like model's labels stay LABEL_0 / LABEL_1.
    with pytest.raises(ComplexityModelError, match="label_0"):
        make_router(hub_like_model, label_aliases={})


def test_a_model_that_cannot_be_loaded_fails_setup(tmp_path):
    router = ComplexityStrategy(make_catalog(), ComplexityConfig(model=str(tmp_path / "no-such-model")))
    with pytest.raises(ComplexityModelError, match="cannot load the complexity classifier"):
        router.setup()
    assert router.pipeline is None
    with pytest.raises(RuntimeError, match="setup"):
        router.score(contexts(TEXTS))


def test_registry_builds_complexity_with_strict_config(hub_like_model):
    router = build_strategy("complexity", make_catalog(), {"model": hub_like_model, "device": "cpu"})
    router.setup()
    assert router.route(contexts(["What is 2 + 2?"])[0]).expert in {"llama-70b", "wizard-13b"}
    with pytest.raises(ValueError):
        build_strategy("complexity", make_catalog(), {"modle": hub_like_model})


@pytest.mark.parametrize("labels", [{0: "simple", 1: "complex"}])
def test_packaged_minilm_with_a_fresh_two_label_head(tmp_path, labels):
    """Realism: a full MiniLM classifier saved locally runs through the same pipeline code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from experts.packaged_models import resolve_model

    base = resolve_model("packaged:all-minilm-l6-v2")
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp_path)
    router = make_router(str(tmp_path))
    assert router.label_to_expert == {"simple": 2, "complex": 0}
    assert np.allclose(router.predict_quality(TEXTS).sum(1), 1.0, atol=1e-5)
