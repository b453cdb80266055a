"""The one reader of configs/serve.env: Ray Serve process settings that must be in the environment that starts Ray.

Everything that starts a graph goes through here: `python -m serve_app run` (what `make run` and the over-HTTP
benchmark call), `python -m serve_app env` (shell exports for `ray start` on a cluster, see cluster.yaml),
`serve_app.benchmark` and the Serve tests (`apply_serve_env()` before `ray.init`).

Format: one `KEY=VALUE` per line; blank lines and lines starting with `#` are skipped; whitespace around keys and
values is dropped; anything else is an error naming the line.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

SERVE_ENV_FILE = Path(__file__).resolve().parents[1] / "configs" / "serve.env"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ServeEnvError(ValueError):
    """configs/serve.env has a line that is not `KEY=VALUE`."""


def read_serve_env(path: Path = SERVE_ENV_FILE) -> dict[str, str]:
    """The settings of `path` in file order."""
    settings: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ServeEnvError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        settings[key] = value.strip()
    return settings


def apply_serve_env(path: Path = SERVE_ENV_FILE) -> dict[str, str]:
    """Put the settings into this process's environment (a variable already set wins); returns those in force."""
    settings = read_serve_env(path)
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in settings}


def shell_exports(path: Path = SERVE_ENV_FILE) -> str:
    """`export KEY=VALUE` lines, quoted for a POSIX shell."""
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in read_serve_env(path).items())
