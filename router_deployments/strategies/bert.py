"""BERT router: a transformer encoder, mean pooling, dropout and a linear head over the experts, fine-tuned end to end.

The head's softmax output is read as each expert's estimated quality on the prompt: trained on outcome tables, the
target of a prompt is the share of "best expert" it gives each expert (see training/trainers/train_bert.py), so
experts that are often best on prompts like this one get most of the mass. `score` then applies the ExpertProfile
utility with the request's weights, quality * p - cost * cost_norm - ..., so one trained network serves every
cost/carbon/latency trade-off and a cost-weight sweep traces a cost-quality curve. Exact ties go to the cheaper expert.

The network reads `ctx.text`, not the shared sentence embedding: it is fine-tuned, so it embeds the text itself. The
tokenizer truncates from the left (keeps the end of the prompt): few-shot prefixes are long and shared, the question
that decides routing comes last.

A checkpoint holds the whole fine-tuned encoder and the head (`encoder.*`, `head.*`), float32: ~90 MB for MiniLM-L6,
~440 MB for bert-base. `encoder` must still resolve when loading (its tokenizer and config are read from it).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import Field

from router_deployments.encoder import DEFAULT_ENCODER, pick_device
from router_deployments.strategies.base import RouteContext, RoutingStrategy, StrategyConfig

logger = logging.getLogger(__name__)


class BertRouterConfig(StrategyConfig):
    """The network's shape (all of it goes into the checkpoint's architecture) and where it runs."""

    encoder: str = Field(
        DEFAULT_ENCODER,
        description="Hub id (e.g. 'bert-base-uncased'), local directory or 'packaged:<name>' of a BERT-family model.",
    )
    max_length: int = Field(128, ge=8, description="Tokens per prompt; longer prompts keep their end.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout on the pooled embedding before the head.")
    seed: int = Field(0, description="Seed of the head's initial weights.")
    device: str = Field("auto", description="'auto' picks cuda when available, else cpu.")
    batch_size: int = Field(128, gt=0, description="Largest batch scored in one forward pass.")


class BertStrategy(RoutingStrategy):
    """Fine-tuned encoder + linear head; scores are the weighted utility of the predicted per-expert quality."""

    name = "bert"
    Config = BertRouterConfig
    runs_model = True

    def __init__(self, catalog, config=None):
        super().__init__(catalog, config)
        self.network = None
        self.tokenizer = None
        self.device = "cpu"

    # --- building ---------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Load the encoder and tokenizer, add a fresh head, then the configured checkpoint (if any)."""
        self.build()
        if not self.config.checkpoint:
            logger.warning(
                "bert router has no checkpoint: its head is untrained until training.trainers.train_bert fits it"
            )
        super().setup()

    def build(self) -> None:
        """Pretrained encoder + freshly initialised head (seeded), on the configured device, in eval mode."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        from experts.packaged_models import resolve_model

        path = resolve_model(self.config.encoder)
        self.device = pick_device(self.config.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, truncation_side="left")
        encoder = AutoModel.from_pretrained(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            head = torch.nn.Linear(int(encoder.config.hidden_size), len(self.catalog))
        self.network = torch.nn.ModuleDict(
            {"encoder": encoder, "dropout": torch.nn.Dropout(self.config.dropout), "head": head}
        )
        self.network.to(self.device).eval()

    def _require_network(self):
        if self.network is None:
            raise RuntimeError("the bert router is not built: call setup() first")
        return self.network

    # --- forward ----------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]):
        """Tokenize a batch (padded, left-truncated to max_length) onto the network's device."""
        self._require_network()
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        return batch.to(self.device)

    def forward(self, batch) -> tuple[Any, Any]:
        """Logits [batch, n_experts] and the mean-pooled features [batch, hidden] the head reads."""
        net = self._require_network()
        hidden = net["encoder"](**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return net["head"](net["dropout"](pooled)), pooled

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Predicted per-expert quality (softmax of the head) [len(texts), n_experts], in eval mode."""
        import torch

        net = self._require_network()
        was_training = net.training
        net.eval()
        out = np.zeros((len(texts), len(self.catalog)), dtype=np.float32)
        # Batches of similar length pad less when a call holds more than one batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        try:
            with torch.inference_mode():
                for start in range(0, len(texts), self.config.batch_size):
                    idx = order[start : start + self.config.batch_size]
                    logits, _ = self.forward(self.tokenize([texts[i] for i in idx]))
                    out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        finally:
            net.train(was_training)
        return out

    def score(self, contexts: list[RouteContext]) -> np.ndarray:
        """Utility of each expert from the classifier's predicted quality."""
        quality = self.predict_proba([c.text for c in contexts])
        return np.stack([self.profile.utility(q, c.weights, break_ties=True) for q, c in zip(quality, contexts)])

    # --- checkpoint -------------------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """Encoder, sequence length, dropout, head size and pooling."""
        return {
            "encoder": self.config.encoder,
            "max_length": self.config.max_length,
            "dropout": self.config.dropout,
            "n_experts": len(self.catalog),
            "pooling": "mean",
        }

    def state_dict(self) -> dict[str, Any]:
        """The whole fine-tuned network."""
        return dict(self._require_network().state_dict())

    def load_state_dict(self, state: dict[str, Any], version: int | None = None) -> None:
        """Load the network strictly; `version` becomes the policy version."""
        if self.network is None:
            self.build()
        # strict: a missing or unexpected key (another encoder, another head) is an error, not a partial load.
        self.network.load_state_dict(state, strict=True)
        self.network.eval()
        self.policy_version = version if version is not None else self.policy_version + 1
