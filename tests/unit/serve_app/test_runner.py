"""`python -m serve_app run`: its arguments, its progress line, and the report of a failed deployment."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from serve_app.auth import is_loopback
from serve_app.runner import (
    RunArgs,
    api_url,
    check_exposure,
    dashboard_lines,
    failure_report,
    parse_run_args,
    progress_line,
    ready_lines,
    run,
)


def status(app: str, message: str = "", **deployments: tuple[str, str]):
    return SimpleNamespace(
        status=app,
        message=message,
        deployments={n: SimpleNamespace(status=s, message=m) for n, (s, m) in deployments.items()},
    )


def test_arguments():
    assert parse_run_args([]) == RunArgs()
    args = parse_run_args(["config=configs/gpu.yaml", "--non-blocking", "--address", "auto"])
    assert (args.config, args.blocking, args.address) == ("configs/gpu.yaml", False, "auto")
    assert parse_run_args(["--address=ray://head:10001"]).address == "ray://head:10001"


def test_an_unknown_argument_is_the_usage(capsys):
    with pytest.raises(SystemExit) as err:
        parse_run_args(["--reload"])
    assert err.value.code == 2
    out = capsys.readouterr().out
    assert "usage: python -m serve_app run" in out and "'--reload'" in out and "serve run serve_app:graph" in out


def test_progress_names_the_deployments_still_coming_up():
    coming = {"ingress": ("UPDATING", ""), "embedding": ("UPDATING", "")}
    line = progress_line(status("DEPLOYING", router=("HEALTHY", ""), **coming))
    assert line == "[routerllm] DEPLOYING: 1/3 deployments healthy; waiting for embedding, ingress"
    assert progress_line(status("RUNNING", router=("HEALTHY", ""))) == "[routerllm] RUNNING: 1/1 deployments healthy"


def test_a_failed_deployment_reports_each_unhealthy_deployments_message():
    failed = status(
        "DEPLOY_FAILED",
        "Failed to update the deployments ['ingress'].",
        router=("HEALTHY", "fine"),
        ingress=("DEPLOY_FAILED", "Traceback ...\nLearnerNotReadyError: the learner actor asked for num_cpus=100"),
    )
    report = failure_report(failed)
    assert report.startswith("[routerllm] the graph failed to deploy: Failed to update the deployments ['ingress'].")
    assert "--- deployment ingress: DEPLOY_FAILED\nTraceback ...\nLearnerNotReadyError" in report
    assert "deployment router" not in report


def test_ready_lines_say_where_to_open_the_api_the_console_and_the_dashboard():
    text = "\n".join(ready_lines("127.0.0.1:8265", started=0.0))
    assert "http://127.0.0.1:8000/v1" in text and "Console: http://127.0.0.1:8000/ui" in text
    assert "Ray dashboard: http://127.0.0.1:8265" in text and text.endswith("Ctrl-C stops it.")
    assert dashboard_lines("") == ["Ray dashboard: not running (install ray[default] for it)"]


def test_a_replica_error_is_printed_once_while_serve_still_retries(capsys):
    from serve_app.runner import _say_new_messages

    said: dict[str, str] = {}
    retrying = status("DEPLOYING", ingress=("UPDATING", "failed to start 1 time: LearnerNotReadyError ..."))
    _say_new_messages(retrying, said)
    _say_new_messages(retrying, said)
    _say_new_messages(status("DEPLOYING", router=("HEALTHY", "all good")), said)
    assert capsys.readouterr().err == "[routerllm] ingress: failed to start 1 time: LearnerNotReadyError ...\n"


def test_while_stopping_a_repeated_sigterm_is_ignored_and_a_second_ctrl_c_forces_exit(monkeypatch):
    """The same stop often arrives twice (make passes SIGTERM on; a group kill reaches both): the clean shutdown
    must not be cut short by it, but a person's second Ctrl-C ends the process at once."""
    import signal

    from serve_app import runner

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    exits = []
    monkeypatch.setattr(runner.os, "_exit", exits.append)
    try:
        runner._while_stopping()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        assert exits == [130]
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_host_argument_and_loopback():
    assert parse_run_args([]).host == "127.0.0.1"
    assert parse_run_args(["--host", "0.0.0.0"]).host == "0.0.0.0" == parse_run_args(["--host=0.0.0.0"]).host
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "myhost.example"))
    assert api_url("0.0.0.0") == "http://127.0.0.1:8000" and api_url("::1") == "http://[::1]:8000"
    assert "http://10.0.0.5:8000/ui" in "\n".join(ready_lines("", started=0.0, host="10.0.0.5"))


def test_a_graph_without_keys_is_refused_on_a_non_loopback_address(capsys):
    check_exposure("127.0.0.1", keys_open=True)  # open on loopback: allowed
    check_exposure("0.0.0.0", keys_open=False)  # keyed anywhere: allowed
    with pytest.raises(SystemExit) as err:
        check_exposure("0.0.0.0", keys_open=True)
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without API keys" in message and "ROUTERLLM_API_KEYS" in message


def test_run_refuses_before_starting_ray(capsys, monkeypatch):
    """The refusal comes before Ray starts (nothing is started, the exit status is 2); a short key likewise."""
    monkeypatch.delenv("ROUTERLLM_API_KEYS", raising=False)
    monkeypatch.delenv("ROUTERLLM_ADMIN_KEYS", raising=False)
    with pytest.raises(SystemExit) as err:
        run(["--host", "0.0.0.0"])
    assert err.value.code == 2 and "refusing to listen on 0.0.0.0" in capsys.readouterr().err
    monkeypatch.setenv("ROUTERLLM_API_KEYS", "short")
    with pytest.raises(SystemExit) as err:
        run([])
    assert err.value.code == 2 and "shorter than 20 characters" in capsys.readouterr().err
