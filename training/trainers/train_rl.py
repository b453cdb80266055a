"""Offline training of the rl router: Dueling Double DQN on a replayed full-information outcome table.

The loop reads top to bottom like cleanrl's dqn.py: route a few sampled requests epsilon-greedily (exploration
drawn toward low-carbon experts when the budget is tight), store the outcomes in the carbon-aware prioritised
replay buffer, take a TD step on a prioritised minibatch, soft-update the target network. With
`--full-information` (default) the table's outcomes of the experts *not* chosen are stored too, which turns every
sampled request into n_experts transitions. The number of iterations is chosen on an inner validation split of
the training table (lowest TD loss over every expert and a fixed grid of weights), then the router is refitted
on the whole table for that long. `--rllib` trains with RLlib's DQN instead (training/trainers/rllib_pretrain.py).

With `--window N` the episodes are budget windows instead (training/trainers/routing_env.BudgetWindows): N
requests sharing a carbon budget of `--budget-frac` x what the dirtiest expert would spend on them. Each step
routes one request of each of `num_envs` parallel windows through the budget guard (the serving one,
router_deployments/budget_guard.py), stores every expert's transition with its next state (this call's carbon
spent, the window one request shorter), and the TD target bootstraps across the window with Double DQN and
`--gamma`. The network kept is the one whose greedy, guarded policy reached the best quality on windows of the
inner validation rows (checked every `eval_every` iterations once epsilon has decayed; no refit on the whole
table in this mode).

    routerllm train rl --data ../shared/data/routerbench --experts seed4 --out ckpt/rl --holdout 0.3 [--rllib]
    routerllm train rl --data ../shared/data/routerbench --experts seed4 --out ckpt/rl-w50 --window 50 --budget-frac 0.4
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from experts.catalog import ExpertCatalog
from router_deployments import budget_guard
from training.data.routerbench import OutcomeTable, check_aligned
from training.options import add_dataclass_arguments
from training.rewards import RewardConfig
from training.trainers.fit_setup import inner_split, torch_rng, torch_threads
from training.trainers.replay_buffer import CarbonAwareReplayBuffer
from training.trainers.routing_env import BudgetWindows, Contexts, OutcomeRewards

# Fixed validation trade-offs: quality-only and a spread of cost weights.
VALIDATION_COST_WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@dataclass
class Args:
    total_steps: int = field(default=30000, metadata={"help": "requests routed in training (env steps)"})
    num_envs: int = field(default=16, metadata={"help": "requests routed per iteration"})
    gradient_steps: int = field(default=1, metadata={"help": "TD steps per iteration"})
    batch_size: int = field(default=256, metadata={"help": "transitions per TD step"})
    learning_rate: float = field(default=5e-4, metadata={"help": "Adam step size"})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay"})
    hidden: str = field(default="256,256", metadata={"help": "comma list of the Q trunk's hidden widths"})
    tau: float = field(default=0.01, metadata={"help": "target network soft-update rate"})
    buffer_size: int = field(default=50000, metadata={"help": "replay capacity (transitions)"})
    learning_starts: int = field(default=512, metadata={"help": "transitions stored before the first TD step"})
    start_epsilon: float = field(default=1.0, metadata={"help": "initial exploration rate"})
    end_epsilon: float = field(default=0.05, metadata={"help": "final exploration rate"})
    exploration_fraction: float = field(default=0.5, metadata={"help": "share of training to decay epsilon"})
    full_information: bool = field(default=True, metadata={"help": "also store the experts not chosen"})
    alpha: float = field(default=0.6, metadata={"help": "priority exponent of the replay buffer"})
    beta: float = field(default=0.4, metadata={"help": "initial importance-sampling exponent (annealed to 1)"})
    green_weight: float = field(default=0.5, metadata={"help": "replay priority of accuracy per carbon"})
    zero_cost_prob: float = field(default=0.2, metadata={"help": "share of requests with cost weight 0"})
    other_weight_prob: float = field(default=0.25, metadata={"help": "chance of a carbon / latency weight"})
    max_weight: float = field(default=100.0, metadata={"help": "largest cost / carbon / latency weight sampled"})
    budget_bonus: float = field(default=0.0, metadata={"help": "reward bonus when within the carbon budget"})
    over_budget_penalty: float = field(default=0.0, metadata={"help": "reward penalty when over the budget"})
    window: int = field(default=0, metadata={"help": "requests per budget window (0: one-request episodes)"})
    budget_frac: float = field(
        default=0.4, metadata={"help": "--window: budget as a share of the dirtiest expert's carbon on the window"}
    )
    gamma: float = field(default=0.99, metadata={"help": "--window: discount of the bootstrapped TD target"})
    batch_norm: bool = field(default=False, metadata={"help": "BatchNorm in the Q trunk (the seed's network)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout in the Q trunk (the seed's network: 0.2)"})
    val_windows: int = field(default=64, metadata={"help": "--window: validation windows per check"})
    shaping_price: float = field(
        default=0.0, metadata={"help": "--window: potential-based reward shaping, price per unit of carbon left"}
    )
    random_start: float = field(
        default=0.5, metadata={"help": "--window: share of windows started anywhere, with any budget left"}
    )
    val_fraction: float = field(default=0.2, metadata={"help": "inner validation share to pick the length"})
    eval_every: int = field(default=50, metadata={"help": "iterations between validation checks"})
    seed: int = field(default=0, metadata={"help": "seeds weights, sampling, exploration and the split"})
    torch_threads: int = field(default=1, metadata={"help": "torch threads while training (small nets: 1)"})
    progress: bool = field(default=True, metadata={"help": "show tqdm progress bars"})
    rllib: bool = field(
        default=False, metadata={"help": "train with RLlib's DQN (training/trainers/rllib_pretrain.py)"}
    )
    rllib_steps: int = field(default=20000, metadata={"help": "env steps of RLlib training (--rllib)"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The rl trainer's options (every field of Args)."""
    add_dataclass_arguments(parser, Args)


def fit_from_table(table: OutcomeTable, embeddings: np.ndarray, catalog: ExpertCatalog, **options):
    """Train an RLStrategy on `table` (every expert's outcome per prompt); returns it ready to route."""
    args = Args(**options)
    check_aligned(table, catalog)
    if len(embeddings) != len(table):
        raise ValueError(f"{len(embeddings)} embeddings for {len(table)} prompts")
    outcomes = OutcomeRewards(
        embeddings,
        table.scores,
        table.costs,
        catalog,
        RewardConfig(budget_bonus=args.budget_bonus, over_budget_penalty=args.over_budget_penalty),
        args.zero_cost_prob,
        args.other_weight_prob,
        max_weight=args.max_weight,
    )
    if args.rllib:
        from training.trainers.rllib_pretrain import pretrain

        return pretrain(outcomes, new_strategy(args, catalog, embeddings.shape[1]), args)
    iterations = args.total_steps // args.num_envs
    if args.window > 0:
        # The greedy policy of a DQN moves from check to check, so the refit that the one-step mode does (as long
        # again, on every row) can end on a worse one: keep the best checked network of the inner split instead.
        with torch_threads(args.torch_threads), torch_rng():
            train_rows, val_rows = np.arange(len(table)), None
            if args.val_fraction > 0:
                train_rows, val_rows = inner_split(table, args.val_fraction, args.seed)
            strategy, _ = train_windows(args, catalog, outcomes, train_rows, val_rows, iterations)
        return strategy
    with torch_threads(args.torch_threads), torch_rng():
        if args.val_fraction > 0:
            train_rows, val_rows = inner_split(table, args.val_fraction, args.seed)
            _, iterations = train_dqn(args, catalog, outcomes, train_rows, val_rows, iterations)
        strategy, _ = train_dqn(args, catalog, outcomes, np.arange(len(table)), None, iterations)
    return strategy


def new_strategy(args: Args, catalog: ExpertCatalog, embedding_dim: int):
    """An untrained RLStrategy with the Q network Args describes."""
    from router_deployments.strategies.rl import RLConfig, RLStrategy

    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    config = RLConfig(
        embedding_dim=embedding_dim,
        hidden=hidden,
        tau=args.tau,
        seed=args.seed,
        batch_norm=args.batch_norm,
        dropout=args.dropout,
        # Trained over budget windows, Q already prices the budget: no extra carbon penalty when it runs low.
        **({"carbon_penalty": 0.0} if args.window > 0 else {}),
    )
    return RLStrategy(catalog, config)


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    return start + (end - start) * min(t / max(duration, 1.0), 1.0)


def validation_set(outcomes: OutcomeRewards, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observations and rewards of every validation prompt under each validation cost weight (budget full)."""
    n = len(rows)
    obs, rewards = [], []
    for lam in VALIDATION_COST_WEIGHTS:
        weights = np.tile(np.array([[1.0, lam, 0.0, 0.0]], dtype=np.float32), (n, 1))
        ctx = Contexts(rows=rows, weights=weights, budget_left=np.ones(n))
        obs.append(outcomes.observations(ctx))
        rewards.append(outcomes.rewards(ctx))
    return np.concatenate(obs), np.concatenate(rewards)


def route_epsilon_greedy(strategy, outcomes: OutcomeRewards, rng: np.random.Generator, n: int, rows, epsilon: float):
    """Sample n requests from `rows` and pick each one's expert: greedy on the online net, or with probability
    epsilon a random expert drawn toward low-carbon ones when the budget is tight. Returns (contexts, obs, actions)."""
    ctx = outcomes.sample(rng, n, rows)
    obs = outcomes.observations(ctx)
    greedy = strategy.q_values(obs, network="online").argmax(axis=1)
    explore_p = strategy.exploration_probs(ctx.budget_left)
    random_actions = np.array([rng.choice(outcomes.n_experts, p=p) for p in explore_p])
    actions = np.where(rng.random(n) < epsilon, random_actions, greedy)
    return ctx, obs, actions


def store_outcomes(
    buffer: CarbonAwareReplayBuffer, outcomes: OutcomeRewards, ctx: Contexts, obs, actions, full_information: bool
) -> None:
    """Store the replayed outcome of each chosen expert, or with full information those of every expert."""
    rewards = outcomes.rewards(ctx)
    quality = outcomes.quality[ctx.rows]
    if full_information:
        for a in range(outcomes.n_experts):
            buffer.add(obs, a, rewards[:, a], quality[:, a], outcomes.carbon_norm[a])
    else:
        rows = np.arange(len(actions))
        buffer.add(obs, actions, rewards[rows, actions], quality[rows, actions], outcomes.carbon_norm[actions])


def train_dqn(args, catalog, outcomes, train_rows, val_rows, iterations):
    """The DQN loop. With validation rows, keeps the target network with the lowest validation TD loss and
    returns its iteration count; without, trains exactly `iterations` iterations."""
    import torch

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    strategy = new_strategy(args, catalog, outcomes.embeddings.shape[1])
    optimizer = torch.optim.AdamW(strategy.online.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    buffer = CarbonAwareReplayBuffer(args.buffer_size, strategy.obs_dim, args.alpha, args.green_weight, seed=args.seed)
    if val_rows is not None:
        val_obs, val_rewards = (torch.from_numpy(a.astype(np.float32)) for a in validation_set(outcomes, val_rows))
    best_loss, best_iteration, best_state = np.inf, iterations, None

    bar = tqdm(range(1, iterations + 1), desc="rl", unit="it", disable=not args.progress, leave=False)
    for iteration in bar:
        # 1. Route a few requests: epsilon-greedy, exploring toward green experts when the budget is tight.
        epsilon = linear_schedule(
            args.start_epsilon, args.end_epsilon, args.exploration_fraction * iterations, iteration
        )
        ctx, obs, actions = route_epsilon_greedy(strategy, outcomes, rng, args.num_envs, train_rows, epsilon)

        # 2. Observe the outcomes and store them (all experts' with full information).
        store_outcomes(buffer, outcomes, ctx, obs, actions, args.full_information)

        # 3. TD steps on prioritised minibatches (importance-weighted), soft-updating the target net.
        if len(buffer) < args.learning_starts:
            continue
        beta = linear_schedule(args.beta, 1.0, iterations, iteration)
        loss = td_steps(strategy, buffer, optimizer, args, beta)

        # 4. Validation: TD loss of the served (target) net over every expert, keep the best.
        if val_rows is None or iteration % args.eval_every:
            continue
        with torch.no_grad():
            val_loss = float(torch.nn.functional.mse_loss(strategy.target(val_obs), val_rewards))
        bar.set_postfix(loss=f"{loss:.4f}", val=f"{val_loss:.4f}", eps=f"{epsilon:.2f}")
        if val_loss < best_loss:
            best_loss, best_iteration = val_loss, iteration
            best_state = {k: v.clone() for k, v in strategy.state_dict().items()}
    if best_state is not None:
        strategy.load_state_dict(best_state)
    strategy.policy_version += 1
    return strategy, best_iteration


# --- budget windows (--window) ------------------------------------------------------------------------------
def guarded_actions(windows: BudgetWindows, preferences: np.ndarray, t, carbon_left: np.ndarray) -> np.ndarray:
    """The expert the serving budget guard lets each window's request t go to, given the policy's preferences."""
    reserve = np.broadcast_to(windows.reserve(t), (len(carbon_left),))
    return np.array(
        [budget_guard.guard_choice(p, windows.carbon, c, r).index for p, c, r in zip(preferences, carbon_left, reserve)]
    )


def window_quality(strategy, windows: BudgetWindows, window_rows: np.ndarray) -> float:
    """Mean recorded quality of the greedy (served, target-network), guarded policy over these windows."""
    carbon_left = np.full(len(window_rows), windows.budget)
    total = 0.0
    for t in range(windows.window):
        obs = windows.observe(window_rows, t, carbon_left)
        actions = guarded_actions(windows, strategy.q_values(obs), t, carbon_left)
        total += float(windows.outcomes.quality[window_rows[:, t], actions].sum())
        carbon_left = carbon_left - windows.carbon[actions]
    return total / window_rows.size


def train_windows(args, catalog, outcomes: OutcomeRewards, train_rows, val_rows, iterations):
    """The DQN loop over budget windows (the module docstring). With validation rows, keeps the target network
    whose greedy, guarded policy reaches the best quality on validation windows and returns its iteration count;
    without, trains exactly `iterations` iterations."""
    import torch

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    reward = RewardConfig(budget_bonus=args.budget_bonus, over_budget_penalty=args.over_budget_penalty)
    windows = BudgetWindows(
        outcomes, args.window, args.budget_frac, reward, shaping_price=args.shaping_price, gamma=args.gamma
    )
    n_experts = outcomes.n_experts
    strategy = new_strategy(args, catalog, outcomes.embeddings.shape[1])
    optimizer = torch.optim.AdamW(strategy.online.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    buffer = CarbonAwareReplayBuffer(
        args.buffer_size, strategy.obs_dim, args.alpha, args.green_weight, seed=args.seed, n_actions=n_experts
    )
    val_windows = None if val_rows is None else windows.new_windows(rng, args.val_windows, val_rows)
    best_quality, best_iteration, best_state = -np.inf, iterations, None

    rows = windows.new_windows(rng, args.num_envs, train_rows)
    carbon_left, t = np.full(args.num_envs, windows.budget), np.zeros(args.num_envs, dtype=int)
    bar = tqdm(range(1, iterations + 1), desc=f"rl w{args.window}", unit="it", disable=not args.progress, leave=False)
    for iteration in bar:
        # 1. Route request t of every window: epsilon-greedy (green exploration when the budget runs low), guarded.
        epsilon = linear_schedule(
            args.start_epsilon, args.end_epsilon, args.exploration_fraction * iterations, iteration
        )
        step = windows.step(rows, t, carbon_left)
        preferences = strategy.q_values(step.obs, network="online")
        explore_p = strategy.exploration_probs(carbon_left / windows.budget)
        explore = rng.random(args.num_envs) < epsilon
        for i in np.flatnonzero(explore):
            preferences[i] = np.eye(n_experts)[rng.choice(n_experts, p=explore_p[i])]
        actions = guarded_actions(windows, preferences, t, carbon_left)

        # 2. Store every expert's transition (or only the chosen one's) with its next state.
        chosen = range(n_experts) if args.full_information else [None]
        for a in chosen:
            a_rows = actions if a is None else np.full(args.num_envs, a)
            env = np.arange(args.num_envs)
            buffer.add(
                step.obs,
                a_rows,
                step.rewards[env, a_rows],
                step.quality[env, a_rows],
                windows.carbon[a_rows],
                next_obs=step.next_obs[env, a_rows],
                dones=step.dones[env, a_rows],
                next_allowed=step.next_allowed[env, a_rows],
            )
        carbon_left, t = carbon_left - windows.carbon[actions], t + 1
        ended = np.flatnonzero(t == args.window)
        if len(ended):
            # Windows start at their beginning, or (random_start of them) anywhere with any feasible budget left.
            rows[ended] = windows.new_windows(rng, len(ended), train_rows)
            t[ended], carbon_left[ended] = 0, windows.budget
            anywhere = ended[rng.random(len(ended)) < args.random_start]
            t[anywhere], carbon_left[anywhere] = windows.random_starts(rng, len(anywhere))

        # 3. Double DQN steps on prioritised minibatches, bootstrapping across the window.
        if len(buffer) < args.learning_starts:
            continue
        beta = linear_schedule(args.beta, 1.0, iterations, iteration)
        loss = td_steps(strategy, buffer, optimizer, args, beta)

        # 4. Validation: quality of the greedy, guarded policy on validation windows; keep the best. Checks start
        # once exploration has decayed: an early, barely trained network routes nearly everything to one expert,
        # and on a few hundred validation prompts that can score as well as a policy that has learnt the budget.
        if val_windows is None or iteration % args.eval_every or iteration < args.exploration_fraction * iterations:
            continue
        quality = window_quality(strategy, windows, val_windows)
        bar.set_postfix(loss=f"{loss:.4f}", val_q=f"{quality:.4f}", eps=f"{epsilon:.2f}")
        if quality > best_quality:
            best_quality, best_iteration = quality, iteration
            best_state = {k: v.clone() for k, v in strategy.state_dict().items()}
    if best_state is not None:
        strategy.load_state_dict(best_state)
    strategy.policy_version += 1
    return strategy, best_iteration


def td_steps(strategy, buffer, optimizer, args, beta: float) -> float:
    """`args.gradient_steps` TD steps on prioritised minibatches (importance-weighted), feeding each step's TD
    errors back as priorities; a buffer that keeps next states makes them Double DQN steps bootstrapping to the
    next state (gamma = args.gamma), else one-step regressions. Returns the last step's loss."""
    import torch

    loss = float("nan")
    for _ in range(args.gradient_steps):
        batch = buffer.sample(args.batch_size, beta)
        bootstrap = {}
        if batch.next_obs is not None:
            bootstrap = dict(
                next_obs=torch.from_numpy(batch.next_obs),
                dones=torch.from_numpy(batch.dones),
                gamma=args.gamma,
                next_allowed=torch.from_numpy(batch.next_allowed),
            )
        loss, td = strategy.td_step(
            torch.from_numpy(batch.obs),
            torch.from_numpy(batch.actions),
            torch.from_numpy(batch.rewards),
            optimizer,
            torch.from_numpy(batch.weights),
            **bootstrap,
        )
        buffer.update_priorities(batch.index, td)
    return loss
