"""Cold start and routing-path latency of a graph, measured over real HTTP on this machine.

    python -m serve_app.benchmark --config configs/cpu.yaml --requests 200 --out runs/serve-bench

Cold start: from `ray.init` to the first answered chat completion. Routing path: `POST /v1/route`
(ingress, embedding, router; no generation) over N sequential requests, p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import json
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def measure(config_path: str, requests: int, num_cpus: int | None) -> dict:
    import ray
    from ray import serve

    from serve_app.builder import build_app
    from serve_app.config import load_config

    config = load_config(config_path)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config), name="routerllm-bench", route_prefix="/")
    t_deployed = time.perf_counter()
    with httpx.Client(base_url=url, timeout=300) as client:
        first = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": PROMPTS[1]}], "max_tokens": 16}
        )
        first.raise_for_status()
        t_first = time.perf_counter()
        for p in PROMPTS:  # warm every code path once before timing
            client.post("/v1/route", json={"prompt": p}).raise_for_status()
        latencies = []
        for i in tqdm(range(requests), desc="POST /v1/route", unit="req"):
            start = time.perf_counter()
            client.post("/v1/route", json={"prompt": PROMPTS[i % len(PROMPTS)]}).raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)
    serve.shutdown()
    ray.shutdown()
    return {
        "config": str(config_path),
        "cold_start_s": {
            "deployed": round(t_deployed - t0, 2),
            "first_answer": round(t_first - t0, 2),
        },
        "route_ms": {
            "requests": requests,
            "p50": round(statistics.median(latencies), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "mean": round(statistics.fmean(latencies), 2),
        },
        "first_answer_text": first.json()["choices"][0]["message"]["content"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu.yaml")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--num-cpus", type=int, default=None, help="Ray CPUs (default: all cores)")
    parser.add_argument("--out", default=None, help="Directory for results.json")
    args = parser.parse_args(argv)
    result = measure(args.config, args.requests, args.num_cpus)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
