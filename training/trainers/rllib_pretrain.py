"""Offline pretraining of the rl router with RLlib's DQN (new API stack) on the replayed outcome table.

RLlib runs its own Double + Dueling DQN (prioritised episode replay, epsilon-greedy, soft target updates) on
training/trainers/routing_env.RoutingEnv. Its RLModule, DuelingQRLModule, wraps the very DuelingQNetwork the rl strategy
serves, so the learned weights (online and target net) are copied into an RLStrategy as they are and saved in
its usual checkpoint format. Unlike our own loop (training/trainers/train_rl.py), RLlib sees only the expert it
chose on each request, as a live router would (bandit feedback).

    routerllm train rl --rllib --rllib-steps 20000 --data ../shared/data/routerbench --out ckpt/rl
"""

from __future__ import annotations

from typing import Any

from training.trainers.routing_env import OutcomeRewards, RoutingEnv

# RLlib imports torch and ray at import time, so DuelingQRLModule is built on first use (see rl_module_class).
_MODULE_CLASS: type | None = None


def rl_module_class() -> type:
    """DuelingQRLModule: RLlib's default DQN module with its encoder and heads swapped for DuelingQNetwork."""
    global _MODULE_CLASS
    if _MODULE_CLASS is not None:
        return _MODULE_CLASS

    from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
    from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.learner.utils import make_target_network
    from ray.rllib.utils.schedules.scheduler import Scheduler

    from router_deployments.networks import DuelingQNetwork

    class DuelingQRLModule(DefaultDQNTorchRLModule):
        """DQN RLModule whose Q-function is router_deployments.networks.DuelingQNetwork (dueling built in)."""

        def setup(self) -> None:
            cfg = self.model_config
            self.uses_dueling = True  # inside DuelingQNetwork, not RLlib's separate heads
            self.uses_double_q = bool(cfg.get("double_q", True))
            self.num_atoms = 1
            self.epsilon_schedule = Scheduler(fixed_value_or_schedule=cfg["epsilon"], framework=self.framework)
            self.q_net = DuelingQNetwork(
                int(self.observation_space.shape[0]),
                int(self.action_space.n),
                list(cfg["router_hidden"]),
                int(cfg["router_n_weights"]),
            )

        def get_non_inference_attributes(self) -> list[str]:
            return ["_target_q_net"]

        def make_target_networks(self) -> None:
            self._target_q_net = make_target_network(self.q_net)

        def get_target_network_pairs(self) -> list:
            return [(self.q_net, self._target_q_net)]

        def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
            return {QF_PREDS: self.q_net(batch[Columns.OBS])}

        def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
            return {QF_PREDS: self._target_q_net(batch[Columns.OBS])}

        def get_initial_state(self) -> dict:
            return {}

    _MODULE_CLASS = DuelingQRLModule
    return _MODULE_CLASS


def dqn_config(outcomes: OutcomeRewards, args) -> Any:
    """RLlib DQNConfig: double Q, dueling, prioritised episode replay, soft target updates, one-step episodes."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    steps = max(int(args.rllib_steps), 1)
    envs, fragment = 8, 2  # 16 requests per sample; each update replays a batch of args.batch_size
    return (
        DQNConfig()
        .environment(RoutingEnv, env_config={"outcomes": outcomes, "seed": args.seed})
        .framework("torch")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=envs, rollout_fragment_length=fragment)
        .learners(num_learners=0)
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=rl_module_class(),
                model_config={"router_hidden": hidden, "router_n_weights": 4},
            )
        )
        .training(
            double_q=True,
            dueling=True,
            n_step=1,
            gamma=0.0,  # one request is one episode: no bootstrapping (terminated anyway)
            lr=args.learning_rate,
            train_batch_size_per_learner=args.batch_size,
            tau=args.tau,
            target_network_update_freq=1,
            num_steps_sampled_before_learning_starts=min(args.learning_starts, steps // 2),
            epsilon=[(0, args.start_epsilon), (int(steps * args.exploration_fraction), args.end_epsilon)],
            replay_buffer_config={
                "type": "PrioritizedEpisodeReplayBuffer",
                "capacity": args.buffer_size,
                "alpha": args.alpha,
                "beta": args.beta,
            },
        )
        .reporting(min_sample_timesteps_per_iteration=min(1000, steps), metrics_num_episodes_for_smoothing=100)
        .debugging(seed=args.seed, log_level="ERROR")
    )


def export_weights(module_state: dict[str, Any]) -> dict[str, Any]:
    """DuelingQRLModule weights (q_net.*, _target_q_net.*) -> the rl strategy's state (online.*, target.*)."""
    import torch

    prefixes = {"q_net.": "online.", "_target_q_net.": "target."}
    state = {}
    for name, value in module_state.items():
        for theirs, ours in prefixes.items():
            if name.startswith(theirs):
                state[ours + name.removeprefix(theirs)] = torch.as_tensor(value).detach().cpu().clone()
    if not any(k.startswith("target.") for k in state):
        raise KeyError(f"no target network in the RLlib module state (keys: {sorted(module_state)[:6]}...)")
    return state


def pretrain(outcomes: OutcomeRewards, strategy, args):
    """Train with RLlib for args.rllib_steps env steps and load the learned weights into `strategy`, an untrained
    RLStrategy with the network args describes (train_rl.new_strategy); returns it."""
    import ray
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
    from tqdm import tqdm

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    algo = dqn_config(outcomes, args).build_algo()
    try:
        bar = tqdm(total=args.rllib_steps, desc="rllib dqn", unit="step", disable=not args.progress, leave=False)
        sampled = 0
        while sampled < args.rllib_steps:
            result = algo.train()
            now = int(result[ENV_RUNNER_RESULTS].get(NUM_ENV_STEPS_SAMPLED_LIFETIME, sampled))
            bar.update(now - sampled)
            sampled = now
        bar.close()
        # The learner's module holds both nets (the env runner's is inference-only, without the target).
        weights = algo.learner_group.get_weights()[DEFAULT_MODULE_ID]
        state = export_weights(weights)
    finally:
        algo.stop()
        if started_ray:
            ray.shutdown()
    strategy.load_state_dict(state, version=1)
    return strategy
