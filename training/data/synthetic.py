"""The seed design's synthetic routing data: four balanced prompt categories written from templates and keywords.

Category i trains expert slot i of the catalog (catalog order), as in the seed design:

| slot | category        | keywords                                        | seed design's expert |
|------|-----------------|-------------------------------------------------|----------------------|
| 0    | code generation | write function, implement, algorithm, debug     | CodeLlama-13B        |
| 1    | text generation | write story, article, essay, creative writing   | Phi-3-Mini           |
| 2    | general purpose | explain, analyze, compare, what is, how does    | Mistral-7B           |
| 3    | lightweight     | translate, convert, simple, quick, basic        | TinyLlama            |

Prompts fill category templates with random variables and add the seed's natural modifiers (politeness, urgency,
context). Generation and the stratified 70/15/15 split are seeded, so the same seed gives the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

CATEGORIES = ("code_generation", "text_generation", "general_purpose", "lightweight")

# fmt: off
_LANGUAGES = ["Python", "JavaScript", "Java", "C++", "Go", "Rust", "TypeScript", "C#", "Ruby", "Kotlin", "SQL", "Bash"]
_CODE_TASKS = [
    "reverses a linked list", "parses a CSV file into records", "checks whether a string is a palindrome",
    "merges two sorted arrays", "finds the shortest path in a weighted graph", "validates an email address",
    "computes the nth Fibonacci number", "removes duplicates from a list", "serialises a binary tree",
    "implements an LRU cache", "counts word frequencies in a file", "retries an HTTP request with backoff",
    "flattens a nested dictionary", "detects a cycle in a directed graph", "paginates database query results",
]
_ALGORITHMS = [
    "quicksort", "binary search", "Dijkstra's algorithm", "a trie", "breadth-first search", "merge sort",
    "a min-heap", "union-find", "dynamic programming for the knapsack problem", "a rate limiter", "topological sort",
]
_BUGS = [
    "throws an index out of range error", "returns None instead of a list", "leaks memory in a loop",
    "deadlocks under load", "gives the wrong answer for negative numbers", "fails on empty input",
]
_TOPICS = [
    "a lighthouse keeper who finds a message in a bottle", "climate change and coastal cities",
    "the first day at a new job", "a robot learning to paint", "friendship across generations", "the history of tea",
    "remote work",
    "a detective in a city where it never stops raining", "space exploration", "a village that forgets every winter",
]
_AUDIENCES = ["teenagers", "a tech blog", "a local newspaper", "small business owners", "parents", "students"]
_GENRES = ["science fiction", "mystery", "fantasy", "romance", "horror", "comedy"]
_CONCEPTS = [
    "photosynthesis", "inflation", "quantum entanglement", "the blockchain", "natural selection", "supply and demand",
    "machine learning", "the immune system", "plate tectonics", "compound interest", "democracy", "entropy",
    "the greenhouse effect", "neural networks", "the stock market", "vaccination",
]
_FIELDS = ["economics", "medicine", "education", "software engineering", "politics", "biology", "everyday life"]
_PHRASES = [
    "good morning", "where is the train station", "thank you very much", "I would like a coffee", "see you tomorrow",
    "how much does this cost", "the meeting is cancelled", "happy birthday",
]
_TARGET_LANGUAGES = ["French", "Spanish", "German", "Italian", "Japanese", "Portuguese", "Dutch"]
_CONVERSIONS = [("miles", "kilometres"), ("pounds", "kilograms"), ("Celsius", "Fahrenheit"), ("inches", "centimetres"),
                ("litres", "gallons"), ("hours", "minutes")]
_WORDS = ["happy", "quick", "big", "smart", "tired", "cold", "beautiful", "angry", "small", "fast"]
# fmt: on

_TEMPLATES: dict[str, list[str]] = {
    "code_generation": [
        "Write a {lang} function that {code_task}.",
        "Implement {algorithm} in {lang}.",
        "Debug this {lang} code: it {bug}.",
        "Write an algorithm in {lang} that {code_task}.",
        "Can you implement a {lang} class that {code_task}?",
        "Refactor my {lang} function so that it {code_task} more efficiently.",
        "Write unit tests in {lang} for a function that {code_task}.",
    ],
    "text_generation": [
        "Write a short story about {topic}.",
        "Write an article on {topic} for {audience}.",
        "Compose an essay about {topic}.",
        "Write a poem about {topic}.",
        "Draft a blog post about {topic} for {audience}.",
        "Creative writing: a {genre} piece about {topic}.",
        "Write the opening chapter of a {genre} novel about {topic}.",
    ],
    "general_purpose": [
        "Explain {concept}.",
        "What is {concept}?",
        "How does {concept} work?",
        "Compare {concept} and {concept2}.",
        "Analyze the impact of {concept} on {field}.",
        "Why does {concept} matter in {field}?",
        "What are the pros and cons of {concept} in {field}?",
    ],
    "lightweight": [
        "Translate '{phrase}' into {target_language}.",
        "Convert {number} {unit} to {unit2}.",
        "Give a simple definition of the word '{word}'.",
        "Quick question: what's a basic synonym for '{word}'?",
        "Translate this to {target_language}: {phrase}.",
        "Simple conversion: {number} {unit} in {unit2}?",
        "What is the opposite of '{word}'? Just one word.",
    ],
}
_PREFIXES = ["", "", "", "Please ", "Could you help me? ", "Hi! ", "I need this quickly. ", "For my project: "]
_SUFFIXES = ["", "", "", " Thanks!", " It's urgent.", " Please be precise.", " This is for work.", " Thank you."]


@dataclass(frozen=True)
class SyntheticPrompt:
    """One generated prompt and its category index (= the expert slot it trains)."""

    text: str
    category: int


@dataclass
class SyntheticSplits:
    """Stratified train / validation / test splits of the generated prompts."""

    train: list[SyntheticPrompt]
    val: list[SyntheticPrompt]
    test: list[SyntheticPrompt]


def _fill(template: str, rng: random.Random) -> str:
    first, second = rng.sample(_CONCEPTS, 2)
    unit, unit2 = rng.choice(_CONVERSIONS)
    values = {
        "lang": rng.choice(_LANGUAGES),
        "code_task": rng.choice(_CODE_TASKS),
        "algorithm": rng.choice(_ALGORITHMS),
        "bug": rng.choice(_BUGS),
        "topic": rng.choice(_TOPICS),
        "audience": rng.choice(_AUDIENCES),
        "genre": rng.choice(_GENRES),
        "concept": first,
        "concept2": second,
        "field": rng.choice(_FIELDS),
        "phrase": rng.choice(_PHRASES),
        "target_language": rng.choice(_TARGET_LANGUAGES),
        "number": rng.randint(1, 500),
        "unit": unit,
        "unit2": unit2,
        "word": rng.choice(_WORDS),
    }
    return template.format(**values)


def _with_modifiers(text: str, rng: random.Random) -> str:
    prefix = rng.choice(_PREFIXES)
    if prefix == "Please ":
        text = text[0].lower() + text[1:]
    return f"{prefix}{text}{rng.choice(_SUFFIXES)}"


def generate_prompts(n_per_category: int = 2500, seed: int = 0) -> list[SyntheticPrompt]:
    """n_per_category prompts of each category, in a seeded shuffled order."""
    if n_per_category <= 0:
        raise ValueError(f"n_per_category must be > 0, got {n_per_category}")
    rng = random.Random(seed)
    prompts = [
        SyntheticPrompt(_with_modifiers(_fill(rng.choice(_TEMPLATES[name]), rng), rng), category)
        for category, name in enumerate(CATEGORIES)
        for _ in range(n_per_category)
    ]
    rng.shuffle(prompts)
    return prompts


def split_prompts(
    prompts: list[SyntheticPrompt], fractions: tuple[float, float, float] = (0.70, 0.15, 0.15), seed: int = 0
) -> SyntheticSplits:
    """Split each category by `fractions` (train, val, test), so every split stays balanced."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = random.Random(seed)
    splits: tuple[list, list, list] = ([], [], [])
    for category in range(len(CATEGORIES)):
        members = [p for p in prompts if p.category == category]
        rng.shuffle(members)
        n_train = round(len(members) * fractions[0])
        n_val = round(len(members) * fractions[1])
        splits[0].extend(members[:n_train])
        splits[1].extend(members[n_train : n_train + n_val])
        splits[2].extend(members[n_train + n_val :])
    for part in splits:
        rng.shuffle(part)
    return SyntheticSplits(*splits)


def make_synthetic_dataset(n_per_category: int = 2500, seed: int = 0) -> SyntheticSplits:
    """The seed design's dataset: 4 x n_per_category prompts (10,000 by default), split 70/15/15."""
    return split_prompts(generate_prompts(n_per_category, seed), seed=seed)


def texts_and_labels(prompts: list[SyntheticPrompt]) -> tuple[list[str], np.ndarray]:
    """Prompt texts and their category (= expert slot) indices."""
    return [p.text for p in prompts], np.array([p.category for p in prompts], dtype=np.int64)
