"""Cold start and routing-path latency of a graph, measured over real HTTP on this machine.

    python -m serve_app.benchmark --config configs/cpu.yaml --requests 200 --out runs/serve-bench

Cold start: from `ray.init` to the first answered chat completion. Routing path: `POST /v1/route`
(proxy, ingress, embedding, router; no generation) over N sequential requests, p50/p99 in milliseconds, with the
ingress's own split of where the time goes.

Calibration: the same number of `POST`s to a bare three-deployment chain (an ingress reading the JSON body, then
two handle calls to deployments that do nothing), deployed next to the graph and measured in alternating rounds,
so that a slow or busy machine shows as a slow bare chain rather than as a slow router.

Serve's process-level switches come from configs/serve.env, as for `make run` (a variable already set in the
environment wins, e.g. `RAY_SERVE_THROUGHPUT_OPTIMIZED=0` to measure Serve's default mode).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from pathlib import Path

import httpx
from tqdm import tqdm

PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number.",
    "What is the capital of Australia?",
    "Explain the difference between TCP and UDP in two sentences.",
    "Translate 'good morning' into French.",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
]
SPLIT = ("routing", "embedding", "router")  # latency_ms keys the ingress reports for /v1/route


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict:
    return {
        "p50": round(statistics.median(values), 2),
        "p99": round(percentile(values, 0.99), 2),
        "mean": round(statistics.fmean(values), 2),
    }


def bare_chain():
    """Three deployments and nothing else: what Serve itself costs for one POST and two handle calls."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Leaf:
        async def __call__(self, payload):
            return payload

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Head:
        def __init__(self, first, second):
            self.first, self.second = first, second

        async def __call__(self, request: Request):
            body = await request.json()
            a = await self.first.remote(body["prompt"])
            b = await self.second.remote(a)
            return JSONResponse({"echo": b})

    return Head.bind(Leaf.options(name="leaf_a").bind(), Leaf.options(name="leaf_b").bind())


def measure(config_path: str, requests: int, rounds: int, num_cpus: int | None, calibrate: bool) -> dict:
    import ray
    from ray import serve

    from serve_app.builder import build_app
    from serve_app.config import apply_serve_env, load_config

    apply_serve_env()  # the same Serve settings as `make run`
    config = load_config(config_path)
    port = _free_port()
    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="routerllm-bench", route_prefix="/")
    t_deployed = time.perf_counter()
    if calibrate:
        serve.run(bare_chain(), name="bare-chain", route_prefix="/bare-chain")
    route, bare, inside = [], [], {key: [] for key in SPLIT}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
        first = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": PROMPTS[1]}], "max_tokens": 16}
        )
        first.raise_for_status()
        t_first = time.perf_counter()

        def timed(path: str, i: int) -> tuple[float, httpx.Response]:
            start = time.perf_counter()
            reply = client.post(path, json={"prompt": PROMPTS[i % len(PROMPTS)]})
            elapsed = (time.perf_counter() - start) * 1000
            reply.raise_for_status()
            return elapsed, reply

        for i in range(2 * len(PROMPTS)):  # warm every code path once before timing
            timed("/v1/route", i)
            if calibrate:
                timed("/bare-chain", i)
        per_round = -(-requests // rounds)
        with tqdm(total=requests * (2 if calibrate else 1), desc="POST /v1/route (+ bare chain)", unit="req") as bar:
            for r in range(rounds):
                for i in range(r * per_round, min(requests, (r + 1) * per_round)):
                    elapsed, reply = timed("/v1/route", i)
                    route.append(elapsed)
                    split = reply.json()["routing"]["latency_ms"]
                    for key in SPLIT:
                        inside[key].append(split[key])
                    bar.update()
                if calibrate:
                    for i in range(r * per_round, min(requests, (r + 1) * per_round)):
                        bare.append(timed("/bare-chain", i)[0])
                        bar.update()
    serve.shutdown()
    ray.shutdown()
    result = {
        "config": str(config_path),
        "cold_start_s": {"deployed": round(t_deployed - t0, 2), "first_answer": round(t_first - t0, 2)},
        "route_ms": {"requests": requests, **summary(route)},
        # The ingress's own clock (p50 of each part): embed + route, and each of its two handle calls.
        "route_inside_ingress_p50_ms": {key: round(statistics.median(v), 2) for key, v in inside.items()},
        "serve_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")},
        "first_answer_text": first.json()["choices"][0]["message"]["content"],
        "samples_ms": {"route": [round(x, 3) for x in route], "bare_chain": [round(x, 3) for x in bare]},
    }
    if calibrate:
        result["bare_chain_ms"] = {"requests": len(bare), **summary(bare)}
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in result["samples_ms"].items():
        if values:
            ordered = sorted(values)
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=name)
    ax.axvline(20, color="grey", linestyle="--", linewidth=1, label="target p50 20 ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"POST /v1/route, {result['route_ms']['requests']} sequential requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="alternate graph and bare chain this many times")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="skip the bare chain")
    parser.add_argument("--num-cpus", type=int, default=None, help="Ray CPUs (default: all cores)")
    parser.add_argument("--out", default=None, help="Directory for results.json and latency.png")
    args = parser.parse_args(argv)
    result = measure(args.config, args.requests, args.rounds, args.num_cpus, args.calibrate)
    shown = {k: v for k, v in result.items() if k != "samples_ms"}
    print(json.dumps(shown, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        plot(result, out / "latency.png")
        print(f"wrote {out / 'results.json'} and {out / 'latency.png'}")


if __name__ == "__main__":
    main()
