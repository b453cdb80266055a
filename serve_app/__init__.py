"""The RouterLLM Serve graph: `serve run serve_app:graph [config=configs/gpu.yaml]`.

`graph` and `build_app` are loaded on first use, so importing a light module of the package (serve_app.config,
serve_app.serve_env) does not import Ray Serve or FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "graph"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from serve_app import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'serve_app' has no attribute {name!r}")
