"""What the subcommands share: the data options and the comma-list parser."""

from __future__ import annotations

import argparse


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--experts and --embedder: which outcome columns are experts, and which encoder embedded the prompts."""
    parser.add_argument("--experts", default="seed4", help="preset (seed4, mix4) or comma list of model columns")
    parser.add_argument(
        "--embedder", default=None, help="sentence encoder of the cached prompt embeddings (default: MiniLM)"
    )


def names(text: str) -> list[str]:
    """A comma list: "rl, moe" -> ["rl", "moe"]."""
    return [s.strip() for s in text.split(",") if s.strip()]
