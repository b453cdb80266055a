"""Vowpal Wabbit's contextual bandit as a router under test: the reference the online learners must beat.

`--cb_explore_adf --squarecb`, shared features = the prompt embedding interacted with the expert id by `-q SA`
(without an interaction ADF can only learn one score per expert). The vowpalwabbit package comes with the
`bench` extra (pip install -e '.[bench]').
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.benchmarks.stream import Stream

VW_ARGS = "--cb_explore_adf --squarecb -q SA --quiet"


class VowpalWabbitRouter:
    """VW's contextual bandit with action-dependent features (one example line per expert)."""

    def __init__(self, stream: Stream, seed: int = 0, args: str = VW_ARGS):
        try:
            from vowpalwabbit import Workspace
        except ImportError as e:
            raise ModuleNotFoundError(
                "the Vowpal Wabbit reference needs the vowpalwabbit package (pip install -e '.[bench]'), "
                "or pass --no-vw"
            ) from e

        self.stream, self.args = stream, f"{args} --random_seed {seed}"
        self.vw = Workspace(self.args)
        self.rng = np.random.default_rng(seed)
        self.pmf: np.ndarray | None = None
        self.pretrained = 0

    def _example(self, embedding: np.ndarray, label: tuple[int, float, float] | None = None) -> list[str]:
        lines = ["shared |S " + " ".join(f"{i}:{v:.6f}" for i, v in enumerate(embedding))]
        for j in range(len(self.stream.catalog)):
            prefix = f"0:{label[1]:.6f}:{label[2]:.6f} " if label and label[0] == j else ""
            lines.append(f"{prefix}|A e{j}")
        return lines

    def pretrain(self, rows: np.ndarray) -> VowpalWabbitRouter:
        """Learn the stream's rating table (stream.rating, the set-aside rows) at `rows` with full information: every
        expert's reward on each prompt, logged with probability 1, prompts in a seeded order. The same rating prior
        the cold learners' heads get (online.py, rating_prior), so VW starts from what they know. Returns self."""
        if len(rows) == 0:
            return self
        table, embeddings = self.stream.rating, self.stream.rating_embeddings
        rewards = self.stream.rewards(table)
        for row in self.rng.permutation(np.asarray(rows)):
            for j in range(len(self.stream.catalog)):
                self.vw.learn(self._example(embeddings[row], (j, -float(rewards[row, j]), 1.0)))
        self.pretrained = len(rows)
        return self

    def _pmf(self, embedding: np.ndarray) -> np.ndarray:
        pmf = np.asarray(self.vw.predict(self._example(embedding)), dtype=np.float64)
        return pmf / pmf.sum()

    def route(self, event: int, row: int) -> list[int]:
        self.pmf = self._pmf(self.stream.train_embeddings[row])
        return [int(self.rng.choice(len(self.pmf), p=self.pmf))]

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        a = experts[0]
        cost = -self.stream.reward(row, experts)  # VW minimises cost
        self.vw.learn(self._example(self.stream.train_embeddings[row], (a, cost, float(self.pmf[a]))))

    def greedy(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        return np.array([int(np.argmax(self._pmf(e))) for e in embeddings])

    def summary(self) -> dict[str, Any]:
        return {"vw_args": self.args, "pretrained_prompts": self.pretrained}
