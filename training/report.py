"""`routerllm report --url URL --out DIR`: a running graph's carbon report as JSON plus three charts.

It asks `GET /v1/carbon/report` for the figures and pages through `GET /v1/carbon/outcomes` (a progress bar) for
the time series, then writes into DIR:

    report.json     the report as the server computed it
    emissions.png   cumulative gCO2eq per expert over time
    savings.png     gCO2eq spent against always the largest and always the best-quality expert (window, total)
    budget.png      burn-down: what is left of the total carbon budget in the rolling window, over time

A client over HTTP only (no serve_app import); matplotlib loads when the charts are drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

PAGE_SIZE = 500


def _get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    try:
        r = client.get(path, params=params)
    except httpx.HTTPError as e:
        raise ValueError(f"cannot reach {client.base_url}{path}: {e}") from e
    if r.status_code != 200:
        raise ValueError(f"{client.base_url}{path} answered {r.status_code}: {r.text[:300]}")
    return r.json()


def fetch(url: str, window_s: float | None = None, page_size: int = PAGE_SIZE) -> tuple[dict, list[dict]]:
    """The report and every outcome in the store, oldest first."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
        params = {} if window_s is None else {"window_s": window_s}
        report = _get(client, "/v1/carbon/report", **params)
        outcomes: list[dict] = []
        after: int | None = 0
        with tqdm(total=report["total"]["total_calls"], desc="outcomes", unit="call") as bar:
            while after is not None:
                page = _get(client, "/v1/carbon/outcomes", after=after, limit=page_size)
                outcomes.extend(page["outcomes"])
                bar.update(len(page["outcomes"]))
                after = page["next_after"]
    return report, outcomes


def rolling_spend(times: list[float], values: list[float], window_s: float) -> list[float]:
    """At each time (ascending), the sum of the values in the window ending there."""
    out, start, running = [], 0, 0.0
    for i, t in enumerate(times):
        running += values[i]
        while times[start] <= t - window_s:
            running -= values[start]
            start += 1
        out.append(running)
    return out


def carbon_limit(report: dict[str, Any]) -> float | None:
    """The total carbon budget's limit, if one is set."""
    lines = (report.get("budget") or {}).get("lines", [])
    return next((x["limit"] for x in lines if x["scope"] == "total" and x["dimension"] == "carbon_g"), None)


def plot_all(report: dict[str, Any], outcomes: list[dict], out: Path) -> list[Path]:
    """The three charts; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out / "emissions.png", out / "savings.png", out / "budget.png"]
    t0 = outcomes[0]["time"] if outcomes else 0.0

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for expert in sorted({o["expert"] for o in outcomes}):
        rows = [o for o in outcomes if o["expert"] == expert]
        total, ys = 0.0, []
        for o in rows:
            total += o["carbon_g"]
            ys.append(total)
        ax.step([o["time"] - t0 for o in rows], ys, where="post", label=expert)
    ax.set(xlabel="seconds since the first outcome", ylabel="cumulative gCO2eq", title="Emissions per expert")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    spans = [("window", report), ("total", report["total"])]
    for i, (_span, s) in enumerate(spans):
        spent = s["total_emissions_kg"] * 1000
        bars = [spent, spent + s["carbon_saved_kg"] * 1000, spent + s["carbon_saved_vs_best_kg"] * 1000]
        ax.bar([i * 4 + j for j in range(3)], bars, color=["tab:green", "tab:red", "tab:orange"])
    ax.set_xticks([i * 4 + j for i in range(2) for j in range(3)])
    names = ("routed", f"always {report['largest_expert']}", f"always {report['best_quality_expert']}")
    ax.set_xticklabels([f"{span}\n{n}" for span, _ in spans for n in names], fontsize=7)
    ax.set(ylabel="gCO2eq", title="Routed against always one expert")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    times = [o["time"] for o in outcomes]
    spend = rolling_spend(times, [o["carbon_g"] for o in outcomes], report["window"]["seconds"])
    limit = carbon_limit(report)
    if limit is None:
        ax.plot([t - t0 for t in times], spend, label="spent in the rolling window (no limit set)")
    else:
        ax.plot([t - t0 for t in times], [limit - s for s in spend], label="carbon budget left in the window")
        ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="seconds since the first outcome", ylabel="gCO2eq", title="Budget burn-down")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)
    plt.close(fig)
    return paths


def write_report(url: str, out: str | Path, window_s: float | None = None, page_size: int = PAGE_SIZE) -> list[Path]:
    """Fetch, then write report.json and the charts into `out`; returns the paths written."""
    if window_s is not None and not window_s > 0:
        raise ValueError(f"--window-s must be a positive number of seconds, got {window_s}")
    report, outcomes = fetch(url, window_s, page_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return [out / "report.json", *plot_all(report, outcomes, out)]
