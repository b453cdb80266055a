"""Start the graph with the Serve process settings of configs/serve.env.

    python -m serve_app run [config=configs/gpu.yaml]   # = serve run serve_app:graph ..., settings applied
    python -m serve_app env                             # the settings as shell exports (for `ray start`)

`run` replaces this process with `serve run`, so Ctrl-C and SIGTERM reach Serve directly. A setting already in
the environment wins (e.g. `RAY_SERVE_THROUGHPUT_OPTIMIZED=0 python -m serve_app run`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from serve_app.serve_env import apply_serve_env, shell_exports

USAGE = "usage: python -m serve_app run [serve run options] [config=FILE] | python -m serve_app env"


def serve_command(args: list[str]) -> list[str]:
    """The `serve run` command line: the venv's `serve` next to this interpreter, else the one on PATH."""
    local = Path(sys.executable).with_name("serve")
    serve = str(local) if local.is_file() else shutil.which("serve")
    if serve is None:
        raise SystemExit("python -m serve_app: the `serve` command of Ray is not installed (pip install 'ray[serve]')")
    return [serve, "run", "serve_app:graph", *args]


def main(argv: list[str]) -> int:
    """Run `run` or `env`; returns the exit status (2 with the usage for anything else)."""
    if not argv or argv[0] not in ("run", "env"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "env":
        print(shell_exports())
        return 0
    apply_serve_env()
    command = serve_command(argv[1:])
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
