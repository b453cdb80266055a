"""Start the graph with the Serve process settings of configs/serve.env.

    python -m serve_app run [config=configs/gpu.yaml] [--address ADDR] [--non-blocking]   # serve_app/runner.py
    python -m serve_app env                             # the settings as shell exports (for `ray start`)

`run` is its own small runner (serve_app/runner.py): progress while the deployments start, the URLs once ready,
the replicas' warnings and errors in this terminal, and each failed deployment's error. A setting already in the
environment wins (e.g. `RAY_SERVE_THROUGHPUT_OPTIMIZED=0 python -m serve_app run`). Serve's own CLI works too:
`eval "$(python -m serve_app env)"; serve run serve_app:graph config=...`.
"""

from __future__ import annotations

import sys

from serve_app.runner import RUN_USAGE, run
from serve_app.serve_env import shell_exports

USAGE = f"{RUN_USAGE} | python -m serve_app env"


def main(argv: list[str]) -> int:
    """Run `run` or `env`; returns the exit status (2 with the usage for anything else)."""
    if not argv or argv[0] not in ("run", "env"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "env":
        print(shell_exports())
        return 0
    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
