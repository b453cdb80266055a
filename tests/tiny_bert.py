"""Tiny BERT models built from scratch with MiniLM's tokenizer: no hub, fast to load and fine-tune in tests."""

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from experts.packaged_models import resolve_model


def save_tiny_bert(
    out: Path, *, layers: int = 2, classifier: bool = False, head_bias: list[float] | None = None, **config
) -> str:
    """Save a 32-wide BERT and the tokenizer to `out`: a bare encoder, or a sequence classifier (`config` takes
    num_labels, id2label, ...; `head_bias` sets the classifier's output bias, i.e. how often each label wins)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("packaged:all-minilm-l6-v2"))
    cfg = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **config,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg) if classifier else BertModel(cfg)
    if head_bias is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(head_bias))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)
