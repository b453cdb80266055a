"""Cold start and routing-path latency of a graph, measured over real HTTP on this machine.

    python -m serve_app.benchmark --config configs/cpu.yaml --requests 200 --out runs/serve-bench
    python -m serve_app.benchmark --route-only --concurrency 32 --requests 2000 --out runs/route-bench

The second is routing throughput under concurrent clients beside the encoder's own (serve_app/route_throughput.py).

Cold start: from `ray.init` to the first answered chat completion. Routing path: `POST /v1/route`
(ingress, embedding, router; no generation) over N sequential requests, p50/p99 in milliseconds, with the
ingress's own split of where the time goes. It is timed two ways: through Serve's HTTP proxy (port 8000 in
`make run`) and straight into the ingress replica's own HTTP server (Serve's direct ingress, ports from 8100).

Calibration: the same number of `POST`s (both ways) to a bare three-deployment chain (an ingress reading the
JSON body, then two handle calls to deployments that do nothing), deployed next to the graph and measured in
alternating rounds, so that a slow or busy machine shows as a slow bare chain rather than as a slow router.

Serve's process-level switches come from configs/serve.env, as for `make run` (a variable already set in the
environment wins, e.g. `RAY_SERVE_THROUGHPUT_OPTIMIZED=0` to measure Serve's default mode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from serve_app import route_throughput
from serve_app.bench_support import direct_ingress_url, free_port, percentile, summary

PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number.",
    "What is the capital of Australia?",
    "Explain the difference between TCP and UDP in two sentences.",
    "Translate 'good morning' into French.",
    "Which is heavier, a kilogram of feathers or a kilogram of steel?",
]
SPLIT = ("routing", "embedding", "router")  # latency_ms keys the ingress reports for /v1/route


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


def _series(port: int, calibrate: bool) -> tuple[dict, dict]:
    """What to time, as name -> (client, path): through Serve's HTTP proxy, and straight into each app's ingress
    replica where Serve runs it as a direct-ingress server (throughput-optimised mode; see configs/serve.env)."""
    proxy = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    apps = {"route": ("routerllm-bench", "/v1/route")}
    if calibrate:
        apps["bare chain"] = ("bare-chain", "/bare-chain")
    series, direct = {}, {}
    for label, (app, path) in apps.items():
        series[f"{label} via proxy"] = (proxy, path)
        direct[app] = direct_ingress_url(app, port)
        if direct[app]:
            series[f"{label} direct"] = (httpx.Client(base_url=direct[app], timeout=300), path)
    return series, direct


def _time_series(series: dict, requests: int, rounds: int) -> tuple[dict, dict]:
    """Sequential POSTs to every series in alternating rounds, so that machine drift hits every series alike."""
    samples = {name: [] for name in series}
    inside = {name: {key: [] for key in SPLIT} for name in series if name.startswith("route")}

    def timed(name: str, i: int) -> tuple[float, httpx.Response]:
        client, path = series[name]
        start = time.perf_counter()
        reply = client.post(path, json={"prompt": PROMPTS[i % len(PROMPTS)]})
        elapsed = (time.perf_counter() - start) * 1000
        reply.raise_for_status()
        return elapsed, reply

    for i in range(2 * len(PROMPTS)):  # warm every code path once before timing
        for name in series:
            timed(name, i)
    per_round = -(-requests // rounds)
    with tqdm(total=requests * len(series), desc=f"POST x {len(series)} series", unit="req") as bar:
        for r in range(rounds):
            for name in series:
                for i in range(r * per_round, min(requests, (r + 1) * per_round)):
                    elapsed, reply = timed(name, i)
                    samples[name].append(elapsed)
                    if name in inside:
                        split = reply.json()["routing"]["latency_ms"]
                        for key in SPLIT:
                            inside[name][key].append(split[key])
                    bar.update()
    return samples, inside


def measure(config_path: str, requests: int, rounds: int, num_cpus: int | None, calibrate: bool) -> dict:
    """Deploy the graph (and, with `calibrate`, the bare chain) and time /v1/route through the proxy and straight
    into the ingress."""
    import ray
    from ray import serve

    from serve_app.builder import build_app
    from serve_app.config import load_config
    from serve_app.serve_env import apply_serve_env

    apply_serve_env()  # the same Serve settings as `make run`
    config = load_config(config_path)
    port = free_port()
    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="routerllm-bench", route_prefix="/")
    t_deployed = time.perf_counter()
    if calibrate:
        serve.run(bare_chain(), name="bare-chain", route_prefix="/bare-chain")
    series, direct = _series(port, calibrate)
    proxy = series["route via proxy"][0]
    ask = {"messages": [{"role": "user", "content": PROMPTS[1]}], "max_tokens": 16}
    first = proxy.post("/v1/chat/completions", json=ask)
    first.raise_for_status()
    t_first = time.perf_counter()
    samples, inside = _time_series(series, requests, rounds)
    for client, _ in series.values():
        client.close()
    serve.shutdown()
    ray.shutdown()
    return {
        "config": str(config_path),
        "cold_start_s": {"deployed": round(t_deployed - t0, 2), "first_answer": round(t_first - t0, 2)},
        "requests": requests,
        "latency_ms": {name: summary(values) for name, values in samples.items()},
        # The ingress's own clock (p50 of each part): embed + route, and each of its two handle calls.
        "inside_ingress_p50_ms": {
            name: {key: round(statistics.median(v), 2) for key, v in parts.items()} for name, parts in inside.items()
        },
        "direct_ingress": direct,
        "serve_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")},
        "first_answer_text": first.json()["choices"][0]["message"]["content"],
        "samples_ms": {name: [round(x, 3) for x in values] for name, values in samples.items()},
    }


def plot(result: dict, path: Path) -> None:
    """The latency CDF of each series, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in result["samples_ms"].items():
        if values:
            ordered = sorted(values)
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=name)
    tails = [percentile(v, 0.99) for v in result["samples_ms"].values() if v]
    ax.set_xlim(0, 1.3 * max(tails + [20]))  # a handful of slow outliers would otherwise squash the curves
    ax.axvline(20, color="grey", linestyle="--", linewidth=1, label="target p50 20 ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"POST /v1/route and a bare chain, {result['requests']} sequential requests each")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Command line: measure, print and optionally write results.json and latency.png."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="alternate graph and bare chain this many times")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false", help="skip the bare chain")
    parser.add_argument("--num-cpus", type=int, default=None, help="Ray CPUs (default: all cores)")
    parser.add_argument("--out", default=None, help="Directory for results.json and latency.png (throughput.png)")
    route_throughput.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.route_only:
        route_throughput.main_route(args)
        return
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
