"""The RouterLLM Serve graph: `serve run serve_app:graph [config=configs/gpu.yaml]`."""

from serve_app.builder import build_app, graph

__all__ = ["build_app", "graph"]
