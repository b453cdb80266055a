"""`python -m serve_app run`: start the graph in this process and say what is happening.

What `serve run serve_app:graph` does, plus what a new user needs: the Serve settings of configs/serve.env are
applied before Ray starts, the replicas' warnings and errors are streamed to this terminal (`log_to_driver`),
progress is printed while the deployments come up, and once the graph is RUNNING the URLs to open (the API, the
console, the Ray dashboard and how to get its token). When a deployment fails, each deployment's status message
is printed (it carries the replica's traceback, which `serve run` leaves in the controller's log) and the exit
status is 1. Ctrl-C or SIGTERM shuts Serve down cleanly. It says whether the graph asks for API keys, and refuses
to listen on a non-loopback address (`--host`) when no key is set (serve_app/auth.py).

`serve run serve_app:graph config=...` keeps working for cluster users; this runner is for a terminal.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from serve_app.auth import open_exposure
from serve_app.serve_env import apply_serve_env

APP_NAME = "default"  # the name `serve run` gives the application
DEFAULT_HOST = "127.0.0.1"  # Serve's default HTTP address, as under `serve run`
PORT = 8000
RUN_USAGE = "usage: python -m serve_app run [config=FILE] [--address ADDRESS] [--host HOST] [--non-blocking]"


@dataclass
class RunArgs:
    """What `python -m serve_app run` was given."""

    config: str | None = None
    address: str | None = None
    """A running Ray cluster to deploy to (default: the local one if any, else a new one)."""
    blocking: bool = True
    """False (--non-blocking): exit once the graph is RUNNING and leave it serving on the cluster."""
    host: str = DEFAULT_HOST
    """The address Serve's HTTP proxy listens on (0.0.0.0: every interface; needs API keys)."""
    extra: list[str] = field(default_factory=list)


def parse_run_args(argv: list[str]) -> RunArgs:
    """`config=FILE`, `--address ADDRESS`, `--host HOST` and `--non-blocking`; anything else is a usage error
    (SystemExit 2)."""
    args, rest = RunArgs(), list(argv)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("config="):
            args.config = arg.removeprefix("config=")
        elif arg == "--non-blocking":
            args.blocking = False
        elif arg == "--address" and rest:
            args.address = rest.pop(0)
        elif arg.startswith("--address="):
            args.address = arg.removeprefix("--address=")
        elif arg == "--host" and rest:
            args.host = rest.pop(0)
        elif arg.startswith("--host="):
            args.host = arg.removeprefix("--host=")
        else:
            print(f"{RUN_USAGE}\nunknown argument {arg!r} (for other `serve run` options: serve run serve_app:graph)")
            raise SystemExit(2)
    return args


def check_exposure(host: str, keys_open: bool) -> None:
    """SystemExit 2 for a graph without API keys on a non-loopback address: anyone on the network could chat,
    score answers and steer the learner."""
    refusal = open_exposure(host) if keys_open else None
    if refusal:
        print(f"[routerllm] {refusal}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def api_url(host: str) -> str:
    """The URL to print for `host` (a wildcard address is reached through loopback from here)."""
    shown = DEFAULT_HOST if host in ("0.0.0.0", "::") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{PORT}"


def _state(status: Any) -> str:
    """'HEALTHY' for DeploymentStatus.HEALTHY or 'HEALTHY' (Serve's status enums print either way)."""
    return str(getattr(status, "value", status)).rsplit(".", 1)[-1]


def failure_report(app_status: Any) -> str:
    """Each deployment that is not healthy, with its status message (the replica's error and traceback)."""
    lines = [f"[routerllm] the graph failed to deploy: {app_status.message or _state(app_status.status)}"]
    for name, d in app_status.deployments.items():
        if _state(d.status) == "HEALTHY":
            continue
        lines.append(f"--- deployment {name}: {_state(d.status)}\n{d.message or '(no message)'}")
    return "\n".join(lines)


def progress_line(app_status: Any) -> str:
    """One line: how many deployments are healthy and which are still coming up."""
    deployments = app_status.deployments
    waiting = sorted(n for n, d in deployments.items() if _state(d.status) != "HEALTHY")
    healthy = len(deployments) - len(waiting)
    line = f"[routerllm] {_state(app_status.status)}: {healthy}/{len(deployments)} deployments healthy"
    return line + (f"; waiting for {', '.join(waiting)}" if waiting else "")


def dashboard_lines(dashboard_url: str) -> list[str]:
    """Where the Ray dashboard is and, when Ray's token authentication is on, how to get the token."""
    if not dashboard_url:
        return ["Ray dashboard: not running (install ray[default] for it)"]
    lines = [f"Ray dashboard: http://{dashboard_url}  (Serve tab: replicas, logs, metrics)"]
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        token_auth = is_token_auth_enabled()
    except Exception:  # noqa: BLE001 - a private API: when it moves, say nothing rather than fail the start
        token_auth = False
    if token_auth:
        lines.append(
            "  it asks for a token: print it with `.venv/bin/ray get-auth-token` (stored in ~/.ray/auth_token); "
            "RAY_AUTH_MODE=disabled make run starts without one"
        )
    return lines


def ready_lines(dashboard_url: str, started: float, host: str = DEFAULT_HOST) -> list[str]:
    """What to open once the graph is RUNNING."""
    url = api_url(host)
    return [
        f"[routerllm] ready in {time.monotonic() - started:.0f} s",
        f"API (OpenAI-compatible): {url}/v1  (also {url}/healthz, /v1/route, /v1/learner/status)",
        f"Console: {url}/ui",
        *dashboard_lines(dashboard_url),
        "Ctrl-C stops it.",
    ]


def wait_until_running(serve: Any, timeout_s: float = 1800.0, poll_s: float = 1.0) -> Any:
    """Poll Serve until the application is RUNNING (returned) or DEPLOY_FAILED (SystemExit 1 with the report);
    prints a progress line whenever it changes."""
    last, said, deadline = "", {}, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app_status = serve.status().applications.get(APP_NAME)
        if app_status is not None:
            state = _state(app_status.status)
            if state == "DEPLOY_FAILED":
                print(failure_report(app_status), file=sys.stderr, flush=True)
                raise SystemExit(1)
            line = progress_line(app_status)
            if line != last:
                print(line, flush=True)
                last = line
            _say_new_messages(app_status, said)
            if state == "RUNNING":
                return app_status
        time.sleep(poll_s)
    raise SystemExit(f"[routerllm] the graph was not RUNNING after {timeout_s:.0f} s")


def _say_new_messages(app_status: Any, said: dict[str, str]) -> None:
    """Print a deployment's status message when it changes while it is not healthy: a replica that failed to
    start (Serve retries it) or is slow to start says so here, long before the deployment is given up on."""
    for name, d in app_status.deployments.items():
        if d.message and _state(d.status) != "HEALTHY" and said.get(name) != d.message:
            print(f"[routerllm] {name}: {d.message}", file=sys.stderr, flush=True)
            said[name] = d.message


def checked_config(args: RunArgs) -> Any:
    """The config, once it loads, its keys are usable and its address is allowed; otherwise the message and
    SystemExit 2, before anything is started."""
    from serve_app.auth import AuthConfigError, load_key_ring
    from serve_app.config import ConfigError, load_config

    try:
        config = load_config(args.config)
        keys = load_key_ring(config.auth)
    except (ConfigError, AuthConfigError) as e:
        print(f"[routerllm] {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    check_exposure(args.host, keys.open)
    print(f"[routerllm] {keys.describe()}", flush=True)
    return config


def run(argv: list[str]) -> int:
    """Start Ray (or join `--address`), deploy the graph, wait for it, print the URLs, serve until stopped."""
    args = parse_run_args(argv)
    config = checked_config(args)
    apply_serve_env()  # before Ray starts: its processes read these settings from the environment
    # Serve's throughput mode sends replica logs to files only; this runner is for a terminal, so replicas keep
    # stderr (streamed here by log_to_driver) and Serve logs at WARNING: warnings and errors, no access log lines.
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "1")
    started = time.monotonic()
    import ray
    from ray import serve

    from serve_app.builder import build_app

    print(f"[routerllm] starting Ray and the graph of {args.config or 'configs/cpu.yaml'} ...", flush=True)
    context = ray.init(address=args.address, log_to_driver=True)
    _stop_on_signals()
    try:
        quiet = {"log_level": "WARNING"}  # the controller's and the replicas' INFO lines would bury the rest
        serve.start(logging_config=quiet, http_options={"host": args.host, "port": PORT})
        app = build_app(config)
        serve._run(app, _blocking=False, name=APP_NAME, route_prefix="/", logging_config=quiet)
        wait_until_running(serve)
        print("\n".join(ready_lines(getattr(context, "dashboard_url", "") or "", started, args.host)), flush=True)
        if not args.blocking:
            return 0
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\n[routerllm] stopping ...", flush=True)
        _while_stopping()
        if args.address is not None:  # a cluster we joined stays up: take Serve off it
            try:
                serve.shutdown()
            except Exception as e:  # noqa: BLE001 - Ray's own processes may have gone with the same signal
                print(f"[routerllm] Serve had already stopped: {type(e).__name__}", flush=True)
        return 0
    finally:
        if args.blocking:
            ray.shutdown()  # a cluster this command started goes with it, Serve and the learner included
            print("[routerllm] stopped", flush=True)


def _while_stopping() -> None:
    """The same stop often arrives twice (make passes SIGTERM on to its child; a group kill reaches both): ignore
    another SIGTERM, but let a second Ctrl-C from a person end the process at once."""

    def force(signum: int, frame: Any) -> None:
        print("[routerllm] stopped before a clean shutdown", flush=True)
        os._exit(130)

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, force)


def _stop_on_signals() -> None:
    """SIGTERM as Ctrl-C, so both end in the same clean shutdown."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
