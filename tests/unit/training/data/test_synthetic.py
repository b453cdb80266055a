"""The seed design's synthetic routing data: balanced, seeded, split 70/15/15."""

from __future__ import annotations

from collections import Counter

import pytest

from training.data.synthetic import (
    CATEGORIES,
    generate_prompts,
    make_synthetic_dataset,
    split_prompts,
    texts_and_labels,
)


def test_categories_are_balanced_and_in_expert_slot_order():
    prompts = generate_prompts(n_per_category=50, seed=0)
    assert CATEGORIES == ("code_generation", "text_generation", "general_purpose", "lightweight")
    assert Counter(p.category for p in prompts) == {0: 50, 1: 50, 2: 50, 3: 50}


def test_default_dataset_is_the_seed_designs_10000_split_70_15_15():
    splits = make_synthetic_dataset()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (7000, 1500, 1500)
    for part in (splits.train, splits.val, splits.test):
        counts = Counter(p.category for p in part)
        assert len(set(counts.values())) == 1, counts  # every split stays balanced


def test_splits_are_disjoint_and_cover_everything():
    prompts = generate_prompts(n_per_category=20, seed=3)
    splits = split_prompts(prompts, seed=3)
    ids = [id(p) for part in (splits.train, splits.val, splits.test) for p in part]
    assert len(ids) == len(set(ids)) == len(prompts)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (56, 12, 12)


def test_same_seed_same_data_other_seed_other_data():
    assert generate_prompts(30, seed=7) == generate_prompts(30, seed=7)
    assert generate_prompts(30, seed=7) != generate_prompts(30, seed=8)
    assert make_synthetic_dataset(25, seed=1) == make_synthetic_dataset(25, seed=1)


def test_prompts_carry_their_categorys_keywords():
    texts, labels = texts_and_labels(generate_prompts(n_per_category=200, seed=0))
    keywords = {
        0: ("function", "implement", "algorithm", "debug", "class", "unit tests", "refactor"),
        1: ("story", "article", "essay", "poem", "blog post", "creative writing", "novel"),
        2: ("explain", "what is", "how does", "compare", "analyze", "why does", "pros and cons"),
        3: ("translate", "convert", "simple", "synonym", "opposite"),
    }
    for text, label in zip(texts, labels):
        assert any(k in text.lower() for k in keywords[int(label)]), (label, text)
    assert len(set(texts)) > 0.5 * len(texts)  # templates x variables x modifiers give varied prompts


def test_invalid_arguments_are_errors():
    with pytest.raises(ValueError):
        generate_prompts(0)
    with pytest.raises(ValueError, match="fractions"):
        split_prompts(generate_prompts(5), fractions=(0.5, 0.5, 0.5))
