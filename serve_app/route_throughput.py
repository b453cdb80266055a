"""Routing throughput: `POST /v1/route` under N concurrent clients, beside the encoder's own batched throughput.

    python -m serve_app.benchmark --route-only --concurrency 32 --requests 2000 --out runs/route-bench

Two figures from one run, so that the machine's load hits both alike:

- the encoder alone, in this process (no Ray), with the threads the embedding deployment gives it: prompts/s
  when it is handed batches of 1, 2, 4, ... 64 prompts. Its best is the ceiling for routing on this machine: every
  decision needs one embedding.
- the graph of `--config` (the settings of `make run`), `/v1/route` with `--concurrency` clients each sending its
  next request as soon as the last one is answered, through Serve's proxy and straight into the ingress replica,
  in alternating rounds: decisions/s, p50 and p99, and the ingress's own split of each request.

Prompts are real and varied: the seed design's synthetic prompts (short, one line) or RouterBench's (mostly
few-shot, truncated to the encoder's max_length). Every request carries a different prompt of the sample until the
sample is used up; the load runs on this machine's cores too (aiohttp, one connection per client).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from serve_app.bench_support import direct_ingress_url, free_port, load_average, percentile, summary

PROMPT_SOURCES = ("synthetic", "routerbench")
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
SPLIT = ("routing", "embedding", "router")  # latency_ms keys the ingress reports for /v1/route
# The shared evaluation data beside the checkout, as the tests find it (ROUTERLLM_SHARED_DATA moves it).
SHARED_DATA = Path(os.environ.get("ROUTERLLM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_DATA = SHARED_DATA / "routerbench"
JSON_HEADERS = {"content-type": "application/json"}
APP = "routerllm-route-bench"


def load_prompts(source: str, count: int, seed: int, data: str | Path = DEFAULT_DATA) -> list[str]:
    """`count` distinct prompts (fewer if the source has fewer), shuffled with `seed`."""
    if source == "synthetic":
        from training.data.synthetic import generate_prompts

        # A few more than asked: the templates repeat now and then, and repeats are dropped below.
        texts = [p.text for p in generate_prompts(n_per_category=count // 4 + count // 20 + 8, seed=seed)]
    elif source == "routerbench":
        from training.data.routerbench import load_routerbench

        texts = list(load_routerbench(data).prompts)
    else:
        raise ValueError(f"unknown prompt source {source!r}; available: {list(PROMPT_SOURCES)}")
    texts = list(dict.fromkeys(texts))  # distinct: a repeated prompt could be served from a cache
    random.Random(seed).shuffle(texts)
    return texts[:count]


def encoder_throughput(settings, prompts: list[str], batch_sizes=BATCH_SIZES) -> dict:
    """Prompts/s of the deployment's encoder run in this process on batches of each size (same model, runtime,
    threads and max_length as `EmbeddingDeployment`), and the prompts' token counts."""
    from router_deployments.encoder import SentenceEncoder

    encoder = SentenceEncoder(
        settings.model,
        max_length=settings.max_length,
        device=settings.device,
        runtime=settings.runtime,
        threads=settings.threads or os.cpu_count() or 1,
    )
    ids = encoder.tokenizer(prompts, truncation=True, max_length=settings.max_length)["input_ids"]
    tokens = [len(row) for row in ids]
    per_batch = {}
    for size in tqdm(batch_sizes, desc="encoder alone, by batch size", unit="size"):
        encoder.encode(prompts[:size], size)  # warm this shape
        start = time.perf_counter()
        for first in range(0, len(prompts), size):
            encoder.encode(prompts[first : first + size], size)
        per_batch[size] = round(len(prompts) / (time.perf_counter() - start), 1)
    return {
        "runtime": encoder.runtime,
        "threads": settings.threads or os.cpu_count(),
        "prompts": len(prompts),
        "tokens": {"p50": statistics.median(tokens), "max": max(tokens), "mean": round(statistics.fmean(tokens), 1)},
        "prompts_per_s": per_batch,
        "best_prompts_per_s": max(per_batch.values()),
    }


def _part(cmdline: list[str]) -> str:
    """Which part of the graph a process is, from the title Ray gives it ('ray::ServeReplica:app:embedding')."""
    title = " ".join(cmdline)
    if "ServeReplica:" in title:
        return title.split("ServeReplica:", 1)[1].split()[0].rsplit(":", 1)[-1]
    for marker, part in (("ProxyActor", "proxy"), ("ServeController", "controller"), ("Learner", "learner")):
        if marker in title:
            return part
    return "ray (raylet, gcs, workers)"


def cpu_seconds_by_part() -> dict[str, float]:
    """CPU seconds used so far by this process (the clients) and every process it started (Ray and the graph)."""
    import psutil

    me = psutil.Process()
    totals = {"clients (this process)": sum(me.cpu_times()[:2])}
    for child in me.children(recursive=True):
        try:
            part, used = _part(child.cmdline()), sum(child.cpu_times()[:2])
        except psutil.Error:  # gone since the listing
            continue
        totals[part] = totals.get(part, 0.0) + used
    return totals


@dataclass
class Series:
    """What the clients saw of one target (proxy or direct) over every round."""

    latencies_ms: list[float] = field(default_factory=list)
    split_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SPLIT})
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds each part of the graph used during this target's rounds."""
    batches: dict[str, list[int]] = field(default_factory=dict)
    """Per deployment, [batches, items] during this target's rounds (from each deployment's `info`)."""

    def figures(self) -> dict:
        """Decisions/s (answered requests over the rounds' wall time), latency summary and the ingress's split."""
        done = len(self.latencies_ms)
        return {
            "decisions_per_s": round(done / self.seconds, 1) if self.seconds else 0.0,
            "answered": done,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            "latency_ms": summary(self.latencies_ms) if done else None,
            "inside_ingress_p50_ms": {k: round(statistics.median(v), 2) for k, v in self.split_ms.items() if v},
            # Where the cores went: CPU ms per answered request, by process; "machine" includes other users' work.
            "cpu_ms_per_decision": {k: round(1000 * v / max(done, 1), 2) for k, v in sorted(self.cpu_s.items())},
            "mean_batch_size": {k: round(items / count, 2) for k, (count, items) in self.batches.items() if count},
        }


async def _client(session, url: str, bodies: list[bytes], take, series: Series | None, bar) -> None:
    """One client: the next request as soon as the previous one is answered, until `take` runs dry."""
    while (i := take()) is not None:
        start = time.perf_counter()
        try:
            async with session.post(url, data=bodies[i % len(bodies)], headers=JSON_HEADERS) as reply:
                payload, status = await reply.read(), reply.status
        except Exception as e:  # noqa: BLE001 - counted and reported, the load goes on
            payload, status = repr(e).encode(), -1
        elapsed = (time.perf_counter() - start) * 1000
        if series is None:
            continue
        if status != 200:
            series.errors.append(f"{status}: {payload[:200].decode(errors='replace')}")
        else:
            series.latencies_ms.append(elapsed)
            split = json.loads(payload)["routing"]["latency_ms"]
            for key in SPLIT:
                series.split_ms[key].append(split[key])
        bar.update()


async def batch_counts(app: str) -> dict[str, tuple[int, int]]:
    """(batches, items) so far of the router and embedding replicas of `app` (one replica of each here)."""
    from ray import serve

    router = await serve.get_deployment_handle("router", app).info.remote()
    embedding = await serve.get_deployment_handle("embedding", app).info.remote()
    batches = router.get("batches", {})
    return {
        "router": (batches.get("count", 0), batches.get("queries", 0)),
        "embedding": (embedding.get("batches", 0), embedding.get("prompts", 0)),
    }


async def _round(session, url: str, bodies: list[bytes], first: int, count: int, clients: int, series, bar) -> None:
    """`count` requests (prompts from index `first` on) spread over `clients` concurrent clients."""
    indices = iter(range(first, first + count))

    def take() -> int | None:
        return next(indices, None)

    start, cpu_before, machine_before = time.perf_counter(), cpu_seconds_by_part(), _machine_cpu_s()
    await asyncio.gather(*(_client(session, url, bodies, take, series, bar) for _ in range(clients)))
    if series is not None:
        series.seconds += time.perf_counter() - start
        used = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds_by_part().items()}
        used["machine"] = _machine_cpu_s() - machine_before
        for part, seconds in used.items():
            series.cpu_s[part] = series.cpu_s.get(part, 0.0) + seconds


async def _counted_round(app: str | None, *args) -> None:
    """A round, and how many batches the router and the embedding deployment made during it."""
    series = args[-2]
    before = await batch_counts(app) if app else {}
    await _round(*args)
    for name, (count, items) in (await batch_counts(app) if app else {}).items():
        total = series.batches.setdefault(name, [0, 0])
        total[0] += count - before[name][0]
        total[1] += items - before[name][1]


def _machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (every core, every user)."""
    import psutil

    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


async def drive(
    targets: dict[str, str], bodies: list[bytes], requests: int, clients: int, rounds: int, app: str | None = None
) -> dict:
    """Every target warmed with 2 x `clients` requests, then `requests` each in `rounds` alternating rounds
    (`app`: the Serve app whose batch sizes to count; None: don't)."""
    import aiohttp

    results = {name: Series() for name in targets}
    per_round = -(-requests // rounds)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for url in targets.values():
            await _round(session, url, bodies, 0, 2 * clients, clients, None, None)
        with tqdm(total=requests * len(targets), desc=f"/v1/route x {clients} clients", unit="req") as bar:
            for r in range(rounds):
                for name, url in targets.items():
                    count = min(per_round, requests - r * per_round)
                    args = (session, url, bodies, r * per_round, count, clients, results[name], bar)
                    await _counted_round(app, *args)
    return {name: series for name, series in results.items()}


def _targets(app: str, port: int) -> dict[str, str]:
    targets = {"via proxy": f"http://127.0.0.1:{port}/v1/route"}
    direct = direct_ingress_url(app, port)
    if direct:
        targets["direct"] = f"{direct}/v1/route"
    return targets


async def _drive_then_shut_down(*args) -> dict:
    """The load, then Serve's shutdown on the same loop: the handles that counted the batches live on it."""
    from ray import serve

    try:
        return await drive(*args, app=APP)
    finally:
        await serve.shutdown_async()


def measure_route(config_path: str, prompts: list[str], requests: int, clients: int, rounds: int) -> dict:
    """Deploy the graph and drive `/v1/route` with `clients` concurrent clients through the proxy and direct."""
    import ray
    from ray import serve

    from serve_app.builder import build_app
    from serve_app.config import load_config
    from serve_app.serve_env import apply_serve_env

    apply_serve_env()  # the same Serve settings as `make run`
    config = load_config(config_path)
    port = free_port()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), name=APP, route_prefix="/")
        targets = _targets(APP, port)
        bodies = [json.dumps({"prompt": text}).encode() for text in prompts]
        load_before = load_average()
        series = asyncio.run(_drive_then_shut_down(targets, bodies, requests, clients, rounds))
    finally:
        serve.shutdown()  # when the load did not get to it
        ray.shutdown()
    return {
        "targets": targets,
        "load_average_before": load_before,
        "series": {name: s.figures() for name, s in series.items()},
        "samples_ms": {name: [round(x, 2) for x in s.latencies_ms] for name, s in series.items()},
    }


def run(args) -> dict:
    """The encoder alone, then the graph, with the same prompts; returns results.json's content."""
    from serve_app.config import load_config
    from serve_app.serve_env import apply_serve_env

    apply_serve_env()
    config = load_config(args.config)
    prompts = load_prompts(args.prompts, args.requests, args.seed, args.data)
    load_start = load_average()
    encoder = encoder_throughput(config.embedding, prompts[: args.encoder_prompts])
    route = measure_route(args.config, prompts, args.requests, args.concurrency, args.rounds)
    best = encoder["best_prompts_per_s"]
    for figures in route["series"].values():
        figures["share_of_encoder_best"] = round(figures["decisions_per_s"] / best, 3)
    return {
        "config": str(args.config),
        "prompt_source": args.prompts,
        "distinct_prompts": len(prompts),
        "concurrency": args.concurrency,
        "requests_per_target": args.requests,
        "load_average_at_start": load_start,
        "load_average_at_end": load_average(),
        "encoder_alone": encoder,
        **route,
        "serve_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")},
    }


def plot_route(result: dict, path: Path) -> None:
    """Left: the encoder's prompts/s by batch size with /v1/route's decisions/s; right: the latency CDFs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    per_batch = result["encoder_alone"]["prompts_per_s"]
    sizes = [int(k) for k in per_batch]
    left.plot(sizes, list(per_batch.values()), marker="o", color="black", label="encoder alone")
    for (name, figures), colour in zip(result["series"].items(), ("tab:blue", "tab:orange")):
        left.axhline(figures["decisions_per_s"], color=colour, linestyle="--", label=f"/v1/route {name}")
    left.set_xscale("log", base=2)
    left.set_xlabel("prompts per encoder call")
    left.set_ylabel("prompts / s (decisions / s)")
    left.set_ylim(bottom=0)
    left.set_title(f"{result['prompt_source']} prompts, {result['concurrency']} clients")
    left.legend()
    for name, values in result["samples_ms"].items():
        if values:
            ordered = sorted(values)
            right.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=name)
    tails = [percentile(v, 0.995) for v in result["samples_ms"].values() if v]
    right.set_xlim(0, 1.2 * max(tails + [300]))
    right.axvline(300, color="grey", linestyle="--", linewidth=1, label="target p99 300 ms")
    right.set_xlabel("latency (ms)")
    right.set_ylabel("fraction of requests")
    right.set_title("POST /v1/route under load")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_arguments(parser) -> None:
    """The route-only options of `python -m serve_app.benchmark`."""
    parser.add_argument("--route-only", action="store_true", help="routing throughput under concurrent clients")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (--route-only)")
    parser.add_argument("--prompts", choices=PROMPT_SOURCES, default="synthetic", help="prompt source (--route-only)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="RouterBench CSV folder (--prompts routerbench)")
    parser.add_argument("--encoder-prompts", type=int, default=256, help="prompts per batch size, encoder alone")
    parser.add_argument("--seed", type=int, default=0, help="prompt sample and order")


def main_route(args) -> None:
    """Measure, print, and with --out write results.json and throughput.png."""
    result = run(args)
    print(json.dumps({k: v for k, v in result.items() if k != "samples_ms"}, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        plot_route(result, out / "throughput.png")
        print(f"wrote {out / 'results.json'} and {out / 'throughput.png'}")
