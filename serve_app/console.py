"""The browser console at `/ui`: its static files (shipped inside the package, no CDN, no build step) and the one
read-only summary of the graph it needs that no other endpoint gives (`GET /v1/router`).

The ingress only adds the routes; what they answer is decided here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import FileResponse

from serve_app.config import AppConfig
from serve_app.errors import not_found

CONSOLE_DIR = Path(__file__).resolve().parent / "console_ui"

# The console's files by name with their media types. A fixed list, not a directory listing: a request can only
# ever reach these files, whatever path it sends. Module scripts must be served as JavaScript or browsers refuse
# them.
CONSOLE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "main.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
    "controls.js": "text/javascript; charset=utf-8",
    "panels.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "savings.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "keys.js": "text/javascript; charset=utf-8",
}


def console_file(name: str) -> FileResponse:
    """One file of the console; 404 in OpenAI's error shape for any other name."""
    media_type = CONSOLE_FILES.get(name)
    if media_type is None:
        raise not_found(f"no console file {name!r}; the console is at /ui", param="path")
    # no-cache: the browser revalidates, so a redeployed console is never served stale next to a new API.
    return FileResponse(CONSOLE_DIR / name, media_type=media_type, headers={"cache-control": "no-cache"})


def router_summary(config: AppConfig) -> dict[str, Any]:
    """What this graph routes with: the enabled strategies (and which learn online), the default strategy and
    weights, and the grid intensity that turns the catalog's energy per token into gCO2eq."""
    learned = sorted(config.learner.training.strategies) if config.learner else []
    return {
        "strategies": sorted(config.router.strategies),
        "default_strategy": config.router.default_strategy,
        "default_weights": config.router.default_weights.model_dump(),
        "learned_online": learned,
        "carbon_intensity_g_per_kwh": config.catalog.carbon_intensity_g_per_kwh,
    }
