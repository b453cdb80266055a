"""`routerllm bench-load`: the CPU graph under load, then under chaos.

1. Start the graph as a user does (`python -m serve_app run config=...`, in a subprocess of its own process
   group) with replay experts answering RouterBench prompts, two router replicas, and the learner learning moe
   online from the feedback this bench sends.
2. Search: open-loop load at rising rates (x1.5 per step); the highest rate whose step has no failed request, a
   p99 under `p99_ms` and keeps up (answers at least 95% of the offered rate) is the sustainable rate.
3. Hold 80% of it for `hold_s` (no faults).
4. Hold it again for `hold_s` while killing, by pid (SIGKILL), a router replica, an expert replica (the busiest
   expert's) and the learner actor, in turn. Per kill: how long until a replacement process runs, and until the
   last request hurt by it (failed, or over the p99 bound) was sent.
5. Send again the feedback refused with 503 (its message asks for that), then compare the acknowledged feedback
   with the learner's SQLite store, read from this process.

Writes results.json and load.png (latency over time, kills marked) to --out. Processes are found by their Ray
process titles (`ray::ServeReplica:<app>:<deployment>`, `ray::LearnerActor`) among the descendants of the graph's
process only, so other Ray sessions on the machine are never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from training.benchmarks.chaos import KILL_ORDER, Kill, kill_role, wait_replaced
from training.benchmarks.load_traffic import Sample, Traffic, latency_figures
from training.data.prepared import stratified_sample
from training.data.routerbench import catalog_from_table, load_routerbench, resolve_experts
from training.online.outcome_store import OutcomeStore

REPO_ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:8000"  # where `python -m serve_app run` serves
KILL_AT = (0.2, 0.4, 0.6)
"""When each kill happens, as a fraction of the chaos hold (router, expert, learner): the last 40% is 'after'."""


@dataclass
class LoadBenchConfig:
    """What `routerllm bench-load` runs; each field is a command-line option."""

    data: str
    out: str
    experts: str = "seed4"
    p99_ms: float = 1000.0
    """The latency bound a sustainable rate must keep (p99 of every request of a step, failed ones included)."""
    start_rate: float = 2.0
    max_rate: float = 64.0
    step_s: float = 20.0
    hold_s: float = 600.0
    hold_share: float = 0.8
    feedback_share: float = 0.5
    """Share of answered requests that get feedback."""
    limit: int | None = 2000
    """Prompts sampled from the table (the replay experts load the whole table either way)."""
    seed: int = 0


def quick(config: LoadBenchConfig) -> LoadBenchConfig:
    """--quick: short steps and holds (about five minutes in all, graph start included), for a smoke run."""
    return LoadBenchConfig(**{**asdict(config), "step_s": 8.0, "hold_s": 90.0})


def graph_config(config: LoadBenchConfig, root: Path) -> tuple[dict, dict[str, int]]:
    """The graph's YAML (replay experts, moe learned online on two router replicas) and each expert's column."""
    table = load_routerbench(config.data)
    models = resolve_experts(config.experts)
    catalog = catalog_from_table(table, models, data=Path(config.data).resolve())
    experts = []
    for spec in catalog.experts:
        entry = spec.model_dump(mode="json")
        entry.update(num_cpus=0.05, max_new_tokens=4096)
        experts.append(entry)
    graph = {
        # Replay experts answer in milliseconds: a 2 s attempt timeout turns a call stuck on a dead replica into a
        # retry, then a failover, and the failures open its circuit for the requests after it.
        "server": {"max_prompt_chars": 200_000, "request_timeout_s": 2, "request_deadline_s": 30},
        "embedding": {"num_cpus": 0.2, "threads": 1},
        "router": {
            "strategies": {"moe": {"seed": config.seed}},
            "default_strategy": "moe",
            "num_replicas": 2,
            "num_cpus": 0.05,
        },
        "carbon": {"measure_with_codecarbon": False},
        "experts": experts,
        "learner": {
            "namespace": f"routerllm-load-{os.getpid()}",
            "num_cpus": 0.2,
            "training": {
                "store_path": str(root / "outcomes.db"),
                "checkpoint_dir": str(root / "policies"),
                "strategies": {"moe": {}},
                "seed": config.seed,
            },
        },
    }
    return graph, {spec.name: table.models.index(spec.backend.model) for spec in catalog.experts}


class ServedGraph:
    """The graph in a subprocess (its own process group, so that stopping it stops all of Ray with it)."""

    def __init__(self, graph: dict, root: Path, probe: str):
        path = root / "graph.yaml"
        path.write_text(yaml.safe_dump(graph))
        self.log_path = root / "serve.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app", "run", f"config={path}"],
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.probe = probe

    def wait_ready(self, timeout_s: float = 600) -> None:
        """Until a routed chat answers 200; the graph's exit or a timeout is an error naming the log."""
        deadline = time.time() + timeout_s
        body = {"messages": [{"role": "user", "content": self.probe}]}
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve_app run exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.post(URL + "/v1/chat/completions", json=body, timeout=30).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"the graph did not come up in {timeout_s:g} s; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM the process group (a backgrounded `serve_app run` ignores SIGINT), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def sustainable(figures: dict[str, Any], rate: float, step_s: float, p99_ms: float) -> bool:
    """No failed request, p99 within the bound, and the answers kept up with the offered rate."""
    return figures["failed"] == 0 and figures["p99_ms"] <= p99_ms and figures["requests"] >= 0.95 * rate * step_s


async def search_rate(traffic: Traffic, config: LoadBenchConfig) -> tuple[float, list[dict[str, Any]]]:
    """The highest sustainable rate of the x1.5 ladder from start_rate to max_rate, and every step's figures."""
    steps, best, rate = [], None, config.start_rate
    while rate <= config.max_rate:
        samples = await traffic.run(rate, config.step_s, "search")
        figures = {"rate": round(rate, 2), **latency_figures(samples)}
        figures["sustainable"] = sustainable(figures, rate, config.step_s, config.p99_ms)
        steps.append(figures)
        print(
            f"  {rate:6.2f} req/s: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, failed {figures['failed']}"
        )
        if not figures["sustainable"]:
            break
        best, rate = rate, rate * 1.5
    if best is None:
        raise RuntimeError(f"not even {config.start_rate:g} req/s kept p99 under {config.p99_ms:g} ms: {steps[0]}")
    return best, steps


async def chaos(traffic: Traffic, graph: ServedGraph, rate: float, config: LoadBenchConfig):
    """The hold with the three kills; returns its samples and the kills."""
    load = asyncio.create_task(traffic.run(rate, config.hold_s, "chaos"))
    start = traffic.now()
    kills: list[Kill] = []
    waits = []
    for role, at in zip(KILL_ORDER, KILL_AT):
        await asyncio.sleep(max(0.0, start + at * config.hold_s - traffic.now()))
        kill = await kill_role(role, graph.proc.pid, URL, traffic.now)
        kills.append(kill)
        waits.append(asyncio.create_task(wait_replaced(kill, graph.proc.pid, URL, traffic.now)))
    samples = await load
    await asyncio.gather(*waits)
    return samples, kills


def recovery(kills: list[Kill], samples: list[Sample], p99_ms: float, end: float) -> None:
    """Per kill: seconds from the kill to the send time of the last request it hurt (failed or over the bound).
    A hurt request belongs to the last kill before it ended (one sent just before a kill is hurt by that kill)."""
    for i, kill in enumerate(kills):
        until = kills[i + 1].at if i + 1 < len(kills) else end + 3600
        hurt = [
            s.sent
            for s in samples
            if kill.at <= s.sent + s.latency_s < until and (s.status != 200 or s.latency_s * 1000 > p99_ms)
        ]
        kill.recovery_s = round(max(hurt) - kill.at, 2) if hurt else 0.0
        kill.hurt_requests = len(hurt)


def phases(samples: list[Sample], kills: list[Kill]) -> dict[str, dict[str, Any]]:
    """before the first kill, during (first kill to the end of the last recovery), after."""
    first = kills[0].at
    last = max(k.at + max(k.recovery_s or 0.0, k.replaced_s or 0.0) for k in kills)
    return {
        "before": latency_figures([s for s in samples if s.sent < first]),
        "during": latency_figures([s for s in samples if first <= s.sent <= last]),
        "after": latency_figures([s for s in samples if s.sent > last]),
        "all": latency_figures(samples),
    }


def store_check(traffic: Traffic, store_path: Path) -> dict[str, Any]:
    """Acknowledged feedback against the feedback in the learner's store (opened here, another process)."""
    stored = {e.outcome.request_id: e.score for e in OutcomeStore(store_path).experiences_after(0)}
    ours = set(traffic.ledger.first)
    acknowledged = traffic.ledger.acknowledged()
    in_store = ours & set(stored)
    return {
        **traffic.ledger.summary(),
        "stored": len(in_store),
        "acknowledged_missing_from_store": sorted(acknowledged - in_store)[:20],
        "stored_not_acknowledged": sorted(in_store - acknowledged)[:20],
        "acknowledged_equals_stored": acknowledged == in_store,
    }


async def _bench(config: LoadBenchConfig, traffic: Traffic, graph: ServedGraph, root: Path) -> dict[str, Any]:
    print(f"searching the highest rate with p99 <= {config.p99_ms:g} ms ({config.step_s:g} s steps)")
    best, steps = await search_rate(traffic, config)
    rate = best * config.hold_share
    print(f"sustainable: {best:.2f} req/s; holding {rate:.2f} req/s for {config.hold_s:g} s")
    hold = latency_figures(await traffic.run(rate, config.hold_s, "hold"))
    print(f"hold: {hold}; now the same with kills")
    samples, kills = await chaos(traffic, graph, rate, config)
    await asyncio.sleep(1.0)
    await traffic.resend_refused()
    end = max(s.sent for s in samples)
    recovery(kills, samples, config.p99_ms, end)
    return {
        "config": asdict(config),
        "machine": {"cpus": os.cpu_count()},
        "sustainable_rate": best,
        "held_rate": rate,
        "search": steps,
        "hold": hold,
        "chaos": phases(samples, kills),
        "kills": [asdict(k) for k in kills],
        "feedback": store_check(traffic, root / "outcomes.db"),
        "timeline": [[round(s.sent, 3), round(s.latency_s * 1000, 1), s.status] for s in samples],
    }


def run_load_bench(config: LoadBenchConfig) -> dict[str, Any]:
    """Start the graph, run the search, the hold and the chaos hold, stop the graph; results.json and load.png."""
    out = Path(config.out)
    root = out / "graph"
    root.mkdir(parents=True, exist_ok=True)
    graph_yaml, columns = graph_config(config, root)
    table = stratified_sample(load_routerbench(config.data), config.limit, config.seed)
    graph = ServedGraph(graph_yaml, root, table.prompts[0])
    try:
        graph.wait_ready()
        traffic = Traffic(URL, table, columns, config.feedback_share, config.seed)
        results = asyncio.run(_bench(config, traffic, graph, root))
    finally:
        graph.stop()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_load(results, out / "load.png")
    return results


def plot_load(results: dict[str, Any], path: Path) -> None:
    """load.png: the latency of every chaos-hold request over its send time (failed ones in red), the p99 bound,
    and a line at each kill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = results["timeline"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ok = [(t, ms) for t, ms, status in timeline if status == 200]
    bad = [(t, ms) for t, ms, status in timeline if status != 200]
    if ok:
        ax.scatter(*zip(*ok), s=4, alpha=0.5, label="answered")
    if bad:
        ax.scatter(*zip(*bad), s=12, color="red", label=f"failed ({len(bad)})")
    ax.axhline(results["config"]["p99_ms"], color="gray", linestyle="--", label="p99 bound")
    for kill in results["kills"]:
        ax.axvline(kill["at"], color="black", linewidth=0.8)
        ax.annotate(f"kill {kill['role']}", (kill["at"], ax.get_ylim()[1]), fontsize=8, rotation=90, va="top")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the bench started")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"bench-load: chaos hold at {results['held_rate']:.1f} req/s")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(results: dict[str, Any]) -> str:
    """The figures the README quotes, as printed lines."""
    lines = [
        f"sustainable rate: {results['sustainable_rate']:.2f} req/s (p99 <= {results['config']['p99_ms']:g} ms); "
        f"held {results['held_rate']:.2f} req/s for {results['config']['hold_s']:g} s",
        f"{'phase':<14}{'requests':>9}{'failed':>8}{'failed %':>10}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    rows = {"hold": results["hold"], **{f"chaos {k}": v for k, v in results["chaos"].items()}}
    for name, f in rows.items():
        lines.append(
            f"{name:<14}{f['requests']:>9}{f['failed']:>8}{100 * f['failed_share']:>10.3f}"
            f"{f['p50_ms'] or 0:>9}{f['p99_ms'] or 0:>9}"
        )
    for k in results["kills"]:
        lines.append(
            f"kill {k['role']:<8} {k['target']:<28} replaced after {k['replaced_s']} s, last hurt request "
            f"{k['recovery_s']} s after the kill ({k['hurt_requests']} hurt)"
        )
    fb = results["feedback"]
    lines.append(
        f"feedback: {fb['sent']} sent, {fb['acknowledged']} acknowledged ({fb['refused_503']} refused with 503 "
        f"first, then {fb['resent_200']} recorded and {fb['resent_409_already_recorded']} already recorded), "
        f"{fb['stored']} in the store; acknowledged == stored: {fb['acknowledged_equals_stored']}"
    )
    return "\n".join(lines)
