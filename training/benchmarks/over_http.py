"""`routerllm bench-online --through-serve`: the same stream, over HTTP, through the real graph.

The graph is started the way a user starts it (`python -m serve_app run config=...`, as `make run` does, in a
subprocess), with replay experts answering from the outcome table, the learned strategies on several router
replicas, and the learner actor training from `/v1/feedback` and hot-swapping weights into the replicas. Requests
are chat completions with model "router"; feedback is the recorded score of the expert that answered.
training/cli.py hands `serve_routers` to online.run_online_bench as its extra routers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from router_deployments.objectives import ObjectiveWeights
from router_deployments.strategies import RouteContext, build_strategy
from training.benchmarks.online_setup import BENCH_LEARNER, EXPLORATION, STRATEGY_CONFIG, OnlineBenchConfig
from training.benchmarks.stream import Stream

REPO_ROOT = Path(__file__).resolve().parents[2]


def graph_config(stream: Stream, config: OnlineBenchConfig, root: Path, name: str, replicas: int) -> dict:
    """A deployment YAML: replay experts, `name` learned online on `replicas` router replicas."""
    experts = []
    for spec in stream.catalog.experts:
        entry = spec.model_dump(mode="json")
        entry.update(num_cpus=0.05, max_new_tokens=4096)
        entry["backend"]["data"] = str(Path(config.data).resolve())
        experts.append(entry)
    strategy_config = {
        **STRATEGY_CONFIG.get(name, {}),
        **config.strategy_config.get(name, {}),
        "seed": config.router_seed,
    }
    return {
        "server": {"max_prompt_chars": 200_000, "request_timeout_s": 60},
        "embedding": {"num_cpus": 0.2, "threads": 1},
        "router": {
            "strategies": {name: strategy_config},
            "default_strategy": name,
            "default_weights": {"quality": 1.0, "cost": config.lam, "carbon": 0.0, "latency": 0.0},
            "num_replicas": replicas,
            "num_cpus": 0.05,
        },
        "carbon": {"measure_with_codecarbon": False},
        "experts": experts,
        "learner": {
            "namespace": f"routerllm-bench-{os.getpid()}",
            "num_cpus": 0.2,
            "poll_interval_s": 0.1,
            "training": {
                "store_path": str(root / "outcomes.db"),
                "checkpoint_dir": str(root / "policies"),
                "strategies": {name: {"config": strategy_config, **EXPLORATION["cold"]}},
                "seed": config.router_seed,
                **{**BENCH_LEARNER, **config.learner},
            },
        },
    }


class ServeRouter:
    """A StreamRouter whose every decision and feedback goes through the running graph over HTTP."""

    def __init__(self, name: str, stream: Stream, config: OnlineBenchConfig, root: Path, replicas: int = 2):
        self.name, self.stream, self.config = name, stream, config
        self.root = root / f"serve-{name}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = "http://127.0.0.1:8000"  # where `serve run` serves
        self.graph = graph_config(stream, config, self.root, name, replicas)
        path = self.root / "graph.yaml"
        path.write_text(yaml.safe_dump(self.graph))
        self.log = open(self.root / "serve.log", "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            # What `make run` runs: `serve run serve_app:graph` with configs/serve.env applied (a subprocess, not an
            # import: nothing imports serve_app).
            [sys.executable, "-m", "serve_app", "run", f"config={path}"],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=120)
        self._wait_ready()
        self.failed = 0
        self.answered: dict[int, tuple[str, list[str]]] = {}
        self.versions_seen: set[int] = set()
        self.reached_all: dict[int, float] = {}
        self.started = time.time()

    def _wait_ready(self, timeout_s: float = 600) -> None:
        deadline = time.time() + timeout_s
        probe = {"messages": [{"role": "user", "content": self.stream.train.prompts[0]}]}
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve run exited with {self.proc.returncode}; see {self.root / 'serve.log'}")
            try:
                if self.client.post("/v1/route", json=probe).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"the graph did not come up in {timeout_s} s; see {self.root / 'serve.log'}")

    def route(self, event: int, row: int) -> list[int]:
        body = {
            "model": "router",
            "messages": [{"role": "user", "content": self.stream.train.prompts[row]}],
            "router": {"strategy": self.name},
        }
        r = self.client.post("/v1/chat/completions", json=body)
        if r.status_code != 200:
            self.failed += 1  # counted and reported; the event is scored as if the first expert answered
            return [0]
        routing = r.json()["routing"]
        self.versions_seen.add(routing["policy_version"])
        experts = [routing["expert"], *routing.get("fanout_outcomes", {})]
        ids = [routing["request_id"], *routing.get("fanout_outcomes", {}).values()]
        self.answered[event] = (routing["request_id"], ids)
        return [self.stream.catalog.index(e) for e in experts]

    def feedback(self, event: int, row: int, experts: list[int]) -> None:
        if event not in self.answered:
            return
        _, ids = self.answered.pop(event)
        for rid, j in zip(ids, experts):
            score = float(self.stream.train.scores[row, j])
            r = self.client.post("/v1/feedback", json={"request_id": rid, "score": score})
            if r.status_code != 200:
                self.failed += 1
        if event % 20 == 0:
            self._sample_propagation()

    def _sample_propagation(self) -> None:
        """Remember, per published version, how long it took to reach every router replica."""
        p = self.status()["strategies"][self.name]["propagation"]
        if p.get("seconds_to_all") is not None:
            self.reached_all[p["version"]] = p["seconds_to_all"]

    def status(self) -> dict[str, Any]:
        return self.client.get("/v1/learner/status").json()

    def greedy(self, embeddings: np.ndarray, texts: list[str]) -> np.ndarray:
        """The live policy, loaded from its published checkpoint, routing without exploration."""
        live = self.status()["strategies"][self.name]["live_version"]
        strategy = build_strategy(self.name, self.stream.catalog, self.graph["router"]["strategies"][self.name])
        strategy.load(self.root / "policies" / self.name / f"v{live}")
        if hasattr(strategy.config, "epsilon"):
            strategy.config = strategy.config.model_copy(update={"epsilon": 0.0})
        weights = ObjectiveWeights(quality=1.0, cost=self.config.lam)
        ctx = [RouteContext(text=t, embedding=e, weights=weights) for t, e in zip(texts, embeddings)]
        return np.array([self.stream.catalog.index(d.expert) for d in strategy.route_batch(ctx)])

    def summary(self) -> dict[str, Any]:
        s = self.status()["strategies"][self.name]
        out = {
            "through_serve": True,
            "router_replicas": self.graph["router"]["num_replicas"],
            "failed_requests": self.failed,
            "live_version": s["live_version"],
            "publishes": s["publishes"],
            "refused_publishes": s["refused_publishes"],
            "versions_served": sorted(v for v in self.versions_seen if v is not None),
            "propagation": s["propagation"],
            "publish_to_all_replicas_s": {str(v): round(t, 3) for v, t in sorted(self.reached_all.items())},
            "publish_to_all_replicas_max_s": max(self.reached_all.values(), default=None),
            "wall_s_in_serve": time.time() - self.started,
        }
        self.close()
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a backgrounded `serve run` ignores SIGINT
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        self.client.close()


def serve_routers(strategies: list[str], replicas: int = 2) -> dict:
    """Factories for run_online_bench(extra_routers=...): one served graph per strategy, run one after another."""
    return {f"{name}-serve": (lambda s, c, root, n=name: ServeRouter(n, s, c, root, replicas)) for name in strategies}
