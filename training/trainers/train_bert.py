"""Offline training of the BERT router (router_deployments.strategies.bert), readable top to bottom.

Two sources of labelled prompts:
- `table` (default): an outcome table. Each prompt's target is its best-value expert under the labelling weights
  (recorded score minus weighted normalised cost; see `best_value_targets`). Exact ties are *shared* by default:
  with 0/1 scores and quality-only weights most prompts have several best experts, and sending all of that mass to
  the cheapest one (`--label-ties cheaper`, the strict reading of "ties to the cheaper") teaches the network "the
  smallest expert is usually fine" and it routes nearly everything there: on seed4, validation quality after one
  epoch was 0.57 with `cheaper` (all but sent to mistral-7b) against 0.65 with `share`. Shared ties make the softmax
  read as each expert's share of being best, the quality estimate the strategy's utility expects. Cost enters at
  routing time through the request's weights, so one network serves every trade-off.
- `synthetic`: the seed design's four template categories (training.data.synthetic), category i -> expert slot i.

The loop: AdamW (encoder and head at their own learning rates), linear warmup then decay, optional frozen lower
layers, one validation pass per epoch, and the best epoch's weights kept. On tables the validation split is carved
out of the training table (stratified by task) and "best" is the mean recorded utility of the routed expert.

Trainer contract (training/trainers/__init__.py): `add_arguments(parser)` adds one flag per `Args` field (dest =
field name, with its default) and `fit_from_table(table, embeddings, catalog, **options)` returns a trained, ready
BertStrategy; `train_synthetic(catalog, **options)` trains on synthetic data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from experts.catalog import ExpertCatalog
from router_deployments.encoder import DEFAULT_ENCODER
from router_deployments.objectives import ExpertProfile, ObjectiveWeights
from router_deployments.strategies.bert import BertRouterConfig, BertStrategy
from training.data.routerbench import OutcomeTable, check_aligned
from training.options import add_dataclass_arguments
from training.trainers.losses import LOSSES, LossConfig

logger = logging.getLogger(__name__)


@dataclass
class Args:
    """Options of one training run; each becomes a CLI flag (`--max-length` for `max_length`)."""

    source: str = field(default="table", metadata={"choices": ("table", "synthetic"), "help": "training data"})
    encoder: str = field(default=DEFAULT_ENCODER, metadata={"help": "encoder: hub id, directory or packaged:<name>"})
    max_length: int = field(default=128, metadata={"help": "tokens per prompt (keeps the end)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before the head"})
    freeze_layers: int = field(default=0, metadata={"help": "freeze embeddings + this many lower layers (0: none)"})
    loss: str = field(default="ce", metadata={"choices": LOSSES, "help": "training loss"})
    focal_alpha: float = field(default=1.0, metadata={"help": "focal loss alpha"})
    focal_gamma: float = field(default=2.0, metadata={"help": "focal loss gamma"})
    smoothing: float = field(default=0.1, metadata={"help": "label smoothing epsilon"})
    ii_alpha: float = field(default=1.0, metadata={"help": "inter_intra: cross-entropy weight"})
    ii_beta: float = field(default=1.0, metadata={"help": "inter_intra: inter-class hinge weight"})
    ii_gamma: float = field(default=1.0, metadata={"help": "inter_intra: intra-class compactness weight"})
    margin: float = field(default=1.0, metadata={"help": "inter_intra: centroid margin"})
    epochs: int = field(default=2, metadata={"help": "passes over the training prompts"})
    batch_size: int = field(default=16, metadata={"help": "prompts per step"})
    lr: float = field(default=3e-5, metadata={"help": "encoder learning rate"})
    head_lr: float = field(default=1e-3, metadata={"help": "head learning rate (fresh weights learn faster)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "fraction of steps warming the learning rate up"})
    val_fraction: float = field(default=0.15, metadata={"help": "training part held out to pick the best epoch"})
    label_ties: str = field(default="share", metadata={"choices": ("share", "cheaper"), "help": "tied best experts"})
    label_cost_weight: float = field(default=0.0, metadata={"help": "cost weight of the labelling objective"})
    label_carbon_weight: float = field(default=0.0, metadata={"help": "carbon weight of the labelling objective"})
    label_latency_weight: float = field(default=0.0, metadata={"help": "latency weight of the labelling objective"})
    synthetic_per_category: int = field(default=2500, metadata={"help": "synthetic prompts per category (seed: 2500)"})
    max_train_samples: int = field(default=0, metadata={"help": "use at most this many training prompts (0: all)"})
    seed: int = field(default=0, metadata={"help": "seeds the split, head, shuffling and dropout"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto"})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})

    def __post_init__(self) -> None:
        for name in ("source", "loss", "label_ties"):
            choices = _FIELDS[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise ValueError(f"Invalid {name} {getattr(self, name)!r}. Available options are {list(choices)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    @property
    def label_weights(self) -> ObjectiveWeights:
        return ObjectiveWeights(
            cost=self.label_cost_weight, carbon=self.label_carbon_weight, latency=self.label_latency_weight
        )

    def loss_config(self) -> LossConfig:
        return LossConfig(
            self.loss, self.focal_alpha, self.focal_gamma, self.smoothing,
            self.ii_alpha, self.ii_beta, self.ii_gamma, self.margin,
        )  # fmt: skip


_FIELDS = {f.name: f for f in dataclasses.fields(Args)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bert trainer's options (every field of Args)."""
    add_dataclass_arguments(parser, Args)


# --- targets -------------------------------------------------------------------------------------------------
def recorded_value(table: OutcomeTable, catalog: ExpertCatalog, weights: ObjectiveWeights) -> np.ndarray:
    """Value each expert reached on each prompt [N, n_experts] under `weights`.

    quality * recorded score - cost * recorded cost / (largest mean cost of an expert on the table) - carbon and
    latency penalties from the catalog's ExpertProfile (RouterBench records neither).
    """
    profile = ExpertProfile(catalog)
    cost_scale = max(float(table.costs.mean(0).max()), 1e-12)
    return (
        weights.quality * table.scores
        - weights.cost * table.costs / cost_scale
        - weights.carbon * profile.carbon_norm
        - weights.latency * profile.latency_norm
    )


def best_value_targets(
    table: OutcomeTable, catalog: ExpertCatalog, weights: ObjectiveWeights, ties: str = "share"
) -> np.ndarray:
    """Per-prompt target distribution [N, n_experts] over the experts of highest recorded value.

    `ties="share"` splits the target evenly over tied best experts; `ties="cheaper"` gives it all to the tied
    expert that was cheapest on that prompt (first in catalog order if equal).
    """
    value = recorded_value(table, catalog, weights)
    tied = value >= value.max(1, keepdims=True) - 1e-9
    if ties == "share":
        return (tied / tied.sum(1, keepdims=True)).astype(np.float32)
    cheapest = np.where(tied, table.costs, np.inf).argmin(1)
    return np.eye(len(catalog), dtype=np.float32)[cheapest]


# --- the loop ------------------------------------------------------------------------------------------------
def freeze_lower_layers(encoder, n_layers: int) -> None:
    """Freeze the embeddings and the first n_layers transformer layers (n_layers=0 trains everything)."""
    if n_layers <= 0:
        return
    layers = None
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers"):
        obj = encoder
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            layers = obj
            break
    if layers is None:
        raise ValueError(f"cannot find the transformer layers of {type(encoder).__name__} to freeze")
    if n_layers > len(layers):
        raise ValueError(f"freeze_layers={n_layers} but the encoder has only {len(layers)} layers")
    embeddings = getattr(encoder, "embeddings", None) or encoder.get_input_embeddings()
    for module in [embeddings, *layers[:n_layers]]:
        for p in module.parameters():
            p.requires_grad_(False)


def train_loop(
    strategy: BertStrategy,
    texts: list[str],
    targets: np.ndarray,
    val_texts: list[str],
    evaluate: Callable[[np.ndarray], dict[str, float]],
    args: Args,
) -> dict:
    """Fine-tune `strategy.network` on (texts, targets); keep the epoch whose evaluate(val probs)["select"] is best."""
    import torch
    from tqdm import tqdm

    if args.torch_threads > 0:
        # On a busy shared CPU one thread per process often beats two threads waiting on each other.
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = strategy.network
    freeze_lower_layers(net["encoder"], args.freeze_layers)
    encoder_params = [p for p in net["encoder"].parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params, "lr": args.lr}, {"params": net["head"].parameters(), "lr": args.head_lr}],
        weight_decay=args.weight_decay,
    )
    total_steps = args.epochs * math.ceil(len(texts) / args.batch_size)
    warmup = max(1, int(args.warmup_ratio * total_steps))
    # Linear warmup, then linear decay to zero.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / (total_steps - warmup + 1)))
    )
    loss_fn = args.loss_config()
    target_tensor = torch.as_tensor(targets)
    best: dict = {"select": -math.inf}
    history = []
    start_time = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        order = rng.permutation(len(texts))
        running = 0.0
        bar = tqdm(range(0, len(texts), args.batch_size), desc=f"bert epoch {epoch}/{args.epochs}", unit="batch")
        for step, start in enumerate(bar, 1):
            idx = order[start : start + args.batch_size]
            logits, features = strategy.forward(strategy.tokenize([texts[i] for i in idx]))
            loss = loss_fn(logits, target_tensor[idx].to(logits.device), features)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / step:.4f}")
        metrics = {"epoch": epoch, "train_loss": running / max(step, 1), **evaluate(strategy.predict_proba(val_texts))}
        history.append(metrics)
        logger.info("epoch %d: %s", epoch, metrics)
        if metrics["select"] > best["select"]:
            best = dict(metrics, state={k: v.detach().clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best.pop("state"))
    net.eval()
    strategy.policy_version += 1
    return {"best": best, "history": history, "train_seconds": time.perf_counter() - start_time}


def _new_strategy(catalog: ExpertCatalog, args: Args) -> BertStrategy:
    config = BertRouterConfig(
        encoder=args.encoder, max_length=args.max_length, dropout=args.dropout, seed=args.seed, device=args.device
    )
    strategy = BertStrategy(catalog, config)
    strategy.build()
    return strategy


def _sample(n: int, args: Args) -> np.ndarray:
    """Indices of the training prompts to use: all, or a seeded random max_train_samples of them (in order)."""
    if args.max_train_samples <= 0 or args.max_train_samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(args.seed).permutation(n)[: args.max_train_samples])


# --- entry points --------------------------------------------------------------------------------------------
def routing_evaluator(
    table: OutcomeTable, catalog: ExpertCatalog, strategy: BertStrategy, weights: ObjectiveWeights
) -> Callable[[np.ndarray], dict[str, float]]:
    """Route `table`'s prompts from predicted probabilities as score() would; report quality, cost and value."""
    value = recorded_value(table, catalog, weights)
    rows = np.arange(len(table))

    def evaluate(probs: np.ndarray) -> dict[str, float]:
        utility = strategy.profile.utility(probs, weights, break_ties=True)
        chosen = utility.argmax(1)
        return {
            "select": float(value[rows, chosen].mean()),
            "quality": float(table.scores[rows, chosen].mean()),
            "cost_usd": float(table.costs[rows, chosen].mean()),
        }

    return evaluate


def train_on_table(table: OutcomeTable, catalog: ExpertCatalog, args: Args) -> tuple[BertStrategy, dict]:
    """Train on an outcome table (columns in catalog order); returns the strategy and the training metrics."""
    check_aligned(table, catalog)
    train_part, val_part = table.split(args.val_fraction, seed=args.seed)
    train_part = train_part.subset(_sample(len(train_part), args))
    targets = best_value_targets(train_part, catalog, args.label_weights, args.label_ties)
    strategy = _new_strategy(catalog, args)
    evaluate = routing_evaluator(val_part, catalog, strategy, args.label_weights)
    metrics = train_loop(strategy, train_part.prompts, targets, val_part.prompts, evaluate, args)
    metrics.update(n_train=len(train_part), n_val=len(val_part), args=dataclasses.asdict(args))
    return strategy, metrics


def train_synthetic(catalog: ExpertCatalog, **options) -> tuple[BertStrategy, dict]:
    """Train on the seed design's synthetic categories (category i -> expert i); reports test accuracy too."""
    from training.data.synthetic import CATEGORIES, make_synthetic_dataset, texts_and_labels

    args = Args(**{**options, "source": "synthetic"})
    if len(catalog) < len(CATEGORIES):
        raise ValueError(f"synthetic data needs >= {len(CATEGORIES)} experts (one per category), got {catalog.names}")
    splits = make_synthetic_dataset(args.synthetic_per_category, seed=args.seed)
    texts, labels = texts_and_labels([splits.train[i] for i in _sample(len(splits.train), args)])
    val_texts, val_labels = texts_and_labels(splits.val)
    strategy = _new_strategy(catalog, args)

    def accuracy(probs: np.ndarray, truth: np.ndarray = val_labels) -> dict[str, float]:
        return {"select": float((probs.argmax(1) == truth).mean())}

    metrics = train_loop(strategy, texts, labels, val_texts, accuracy, args)
    test_texts, test_labels = texts_and_labels(splits.test)
    metrics.update(
        test_accuracy=accuracy(strategy.predict_proba(test_texts), test_labels)["select"],
        n_train=len(texts), n_val=len(val_texts), n_test=len(test_texts), args=dataclasses.asdict(args),
    )  # fmt: skip
    return strategy, metrics


def fit_from_table(table: OutcomeTable, embeddings: np.ndarray, catalog: ExpertCatalog, **options) -> BertStrategy:
    """Trainer contract: a trained, ready BERT router. `embeddings` are unused (the encoder reads the text)."""
    del embeddings
    args = Args(**options)
    if args.source == "synthetic":
        strategy, metrics = train_synthetic(catalog, **options)
    else:
        strategy, metrics = train_on_table(table, catalog, args)
    logger.info("bert trained: %s", {k: v for k, v in metrics.items() if k != "history"})
    return strategy


# --- standalone run: train on part of a RouterBench table, report the held-out cost-quality curve ----------------
def holdout_report(strategy: BertStrategy, table: OutcomeTable, cost_weights: list[float]) -> dict:
    """Route held-out prompts at each cost weight as score() does (one forward pass serves every weight).

    Costs are USD per 1,000 requests; AIQ and the best quality within 25% of the priciest expert's cost follow
    training.cost_quality, with c_max = the largest cost of these points and the single experts.
    """
    from training import cost_quality as curves

    probs = strategy.predict_proba(table.prompts)
    rows = np.arange(len(table))
    points = []
    for w in cost_weights:
        utility = strategy.profile.utility(probs, ObjectiveWeights(cost=w), break_ties=True)
        chosen = utility.argmax(1)
        cost, quality = curves.curve_point(table.costs[rows, chosen], table.scores[rows, chosen])
        shares = np.bincount(chosen, minlength=len(strategy.catalog)) / len(table)
        points.append({"cost_weight": w, "cost_per_1k": cost, "quality": quality, "shares": shares.round(3).tolist()})
    singles = {
        name: dict(zip(("cost_per_1k", "quality"), curves.curve_point(table.costs[:, i], table.scores[:, i])))
        for i, name in enumerate(strategy.catalog.names)
    }
    curve = [(p["cost_per_1k"], p["quality"]) for p in points]
    priciest = max(s["cost_per_1k"] for s in singles.values())
    c_max = max([priciest] + [c for c, _ in curve])
    summary = {
        "default_quality": points[0]["quality"],
        "default_cost_per_1k": points[0]["cost_per_1k"],
        "best_quality": max(q for _, q in curve),
        "best_single_expert_quality": max(s["quality"] for s in singles.values()),
        "aiq": curves.aiq(curve, c_max),
        "single_expert_aiq": {n: curves.aiq([(s["cost_per_1k"], s["quality"])], c_max) for n, s in singles.items()},
        "best_quality_within_25pct_of_priciest": curves.best_quality_within(curve, 0.25 * priciest),
    }
    return {"summary": summary, "points": points, "single_experts": singles}


# The benchmark's sweep at 40 weights (training.benchmarks.offline.cost_weights(40)): 0, then 40 log-spaced weights
# from 1e-3 to 100.
DEFAULT_COST_WEIGHTS = ",".join(f"{w:.6g}" for w in (0.0, *np.geomspace(1e-3, 100.0, 40)))


def main(argv: list[str] | None = None) -> None:
    """python -m training.trainers.train_bert --data ../shared/data/routerbench --experts seed4 [--out DIR] [options]"""
    from training.data.routerbench import catalog_from_table, load_routerbench, resolve_experts

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", required=True, help="RouterBench CSV file or directory")
    parser.add_argument("--experts", default="seed4", help="preset name or comma-separated model columns")
    parser.add_argument("--holdout", type=float, default=0.3, help="fraction held out for the final report")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split")
    parser.add_argument("--cost-weights", default=DEFAULT_COST_WEIGHTS, help="comma-separated cost weights")
    parser.add_argument("--out", default=None, help="checkpoint directory to write (never inside git)")
    add_arguments(parser)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = {name: getattr(ns, name) for name in _FIELDS}

    table = load_routerbench(ns.data, resolve_experts(ns.experts))
    train_part, test_part = table.split(ns.holdout, seed=ns.split_seed)
    catalog = catalog_from_table(train_part, data=ns.data)
    if options["source"] == "synthetic":
        strategy, metrics = train_synthetic(catalog, **options)
    else:
        strategy, metrics = train_on_table(train_part, catalog, Args(**options))
    metrics["holdout"] = holdout_report(strategy, test_part, [float(w) for w in ns.cost_weights.split(",")])
    if ns.out:
        strategy.save(ns.out, metrics={k: v for k, v in metrics.items() if k != "history"})
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
