"""Offline training of the mixture-of-experts router on a full-information outcome table.

Every training prompt carries every expert's recorded quality, so the gate's logits are fitted to all of them at
once (binary cross-entropy per expert) plus the load-balancing loss on noisy gates (see
router_deployments/strategies/moe.py). The number of epochs is chosen by early stopping on an inner validation
split of the training table (stratified by task), then the gate is refitted on the whole table for that many
epochs. The trainer contract is training/trainers/__init__.py's: `add_arguments(parser)` and `fit_from_table(...)`.

    routerllm train moe --data ../shared/data/routerbench --experts seed4 --out ckpt/moe --holdout 0.3
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from experts.catalog import ExpertCatalog
from training.data.routerbench import OutcomeTable, check_aligned
from training.options import add_dataclass_arguments
from training.trainers.fit_setup import inner_split, torch_rng, torch_threads


@dataclass
class Args:
    epochs: int = field(default=100, metadata={"help": "most epochs; early stopping usually ends sooner"})
    batch_size: int = field(default=64, metadata={"help": "prompts per gradient step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam step size"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    hidden: str = field(default="256", metadata={"help": "comma list of hidden layer widths"})
    dropout: float = field(default=0.5, metadata={"help": "dropout after each hidden layer"})
    top_k: int = field(default=1, metadata={"help": "experts in the fan-out of each routed request"})
    temperature: float = field(default=1.0, metadata={"help": "gate softmax temperature in training"})
    noise_std: float = field(default=1.0, metadata={"help": "std of the gate's exploration noise in training"})
    balance_weight: float = field(default=0.01, metadata={"help": "weight of the load-balancing loss"})
    val_fraction: float = field(default=0.2, metadata={"help": "inner validation share for early stopping"})
    patience: int = field(default=10, metadata={"help": "epochs without validation gain before stopping"})
    seed: int = field(default=0, metadata={"help": "seeds weights, shuffling, noise and the inner split"})
    torch_threads: int = field(default=1, metadata={"help": "torch threads while training (small nets: 1)"})
    progress: bool = field(default=True, metadata={"help": "show tqdm progress bars"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The moe trainer's options (every field of Args)."""
    add_dataclass_arguments(parser, Args)


def fit_from_table(table: OutcomeTable, embeddings: np.ndarray, catalog: ExpertCatalog, **options):
    """Train a MoEStrategy on every (prompt, expert) outcome of `table`; returns it ready to route."""
    args = Args(**options)
    check_aligned(table, catalog)
    if len(embeddings) != len(table):
        raise ValueError(f"{len(embeddings)} embeddings for {len(table)} prompts")
    epochs = args.epochs
    with torch_threads(args.torch_threads), torch_rng():
        if args.val_fraction > 0:
            train_idx, val_idx = inner_split(table, args.val_fraction, args.seed)
            _, epochs = train_gate(args, catalog, embeddings, table.scores, train_idx, val_idx, args.epochs)
        strategy, _ = train_gate(args, catalog, embeddings, table.scores, np.arange(len(table)), None, epochs)
    return strategy


def new_strategy(args: Args, catalog: ExpertCatalog, embedding_dim: int):
    """An untrained MoEStrategy with the gate Args describes."""
    from router_deployments.strategies.moe import MoEConfig, MoEStrategy

    config = MoEConfig(
        embedding_dim=embedding_dim,
        hidden=[int(h) for h in args.hidden.split(",") if h.strip()],
        dropout=args.dropout,
        top_k=args.top_k,
        temperature=args.temperature,
        noise_std=args.noise_std,
        balance_weight=args.balance_weight,
        seed=args.seed,
    )
    return MoEStrategy(catalog, config)


def train_gate(args, catalog, embeddings, scores, train_idx, val_idx, epochs):
    """The training loop. With validation rows, stops after `patience` epochs without a lower validation BCE
    and returns the best epoch count; without, trains exactly `epochs` epochs."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)  # dropout draws from torch's global generator (fit_from_table forks it)
    rng = np.random.default_rng(args.seed)
    strategy = new_strategy(args, catalog, embeddings.shape[1])
    net = strategy.net
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    x_all = torch.from_numpy(np.asarray(embeddings, dtype=np.float32))
    q_all = torch.from_numpy(np.asarray(scores, dtype=np.float32))

    best_loss, best_epoch, best_state = np.inf, epochs, None
    bar = tqdm(range(1, epochs + 1), desc="moe", unit="epoch", disable=not args.progress, leave=False)
    for epoch in bar:
        net.train()
        order = rng.permutation(train_idx)
        for start in range(0, len(order), args.batch_size):
            rows = torch.from_numpy(order[start : start + args.batch_size])
            terms = strategy.loss(net(x_all[rows]), q_all[rows])
            optimizer.zero_grad()
            terms["loss"].backward()
            optimizer.step()
        if val_idx is None:
            continue
        net.eval()
        with torch.no_grad():
            rows = torch.from_numpy(val_idx)
            val_loss = float(F.binary_cross_entropy_with_logits(net(x_all[rows]), q_all[rows]))
        bar.set_postfix(val_bce=f"{val_loss:.4f}", best=best_epoch if best_state else "-")
        if val_loss < best_loss - 1e-5:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= args.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    strategy.policy_version += 1
    return strategy, best_epoch
