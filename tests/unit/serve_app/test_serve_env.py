"""configs/serve.env has one reader: whitespace-tolerant, strict about malformed lines, and the environment wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from serve_app.serve_env import SERVE_ENV_FILE, ServeEnvError, apply_serve_env, read_serve_env, shell_exports

REPO = Path(__file__).resolve().parents[3]


def test_reads_the_shipped_file():
    settings = read_serve_env()
    assert settings["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert int(settings["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]) == 8100
    assert SERVE_ENV_FILE == REPO / "configs" / "serve.env"


def test_whitespace_comments_and_blank_lines(tmp_path):
    path = tmp_path / "serve.env"
    path.write_text("# a comment\n\n  A_KEY = 1 \nB=two words\n   # indented comment\nC=\n")
    assert read_serve_env(path) == {"A_KEY": "1", "B": "two words", "C": ""}


@pytest.mark.parametrize("line", ["NO_EQUALS_SIGN", "=value", "1BAD=x", "BAD KEY=x"])
def test_malformed_line_names_file_and_line(tmp_path, line):
    path = tmp_path / "serve.env"
    path.write_text(f"GOOD=1\n{line}\n")
    with pytest.raises(ServeEnvError, match=r"serve\.env:2: expected KEY=VALUE"):
        read_serve_env(path)


def test_a_variable_already_set_wins(tmp_path, monkeypatch):
    path = tmp_path / "serve.env"
    path.write_text("ROUTERLLM_TEST_A=from-file\nROUTERLLM_TEST_B=from-file\n")
    monkeypatch.setenv("ROUTERLLM_TEST_A", "from-env")
    monkeypatch.delenv("ROUTERLLM_TEST_B", raising=False)
    assert apply_serve_env(path) == {"ROUTERLLM_TEST_A": "from-env", "ROUTERLLM_TEST_B": "from-file"}
    assert os.environ["ROUTERLLM_TEST_B"] == "from-file"


def test_shell_exports_are_quoted_and_evaluate_back(tmp_path):
    path = tmp_path / "serve.env"
    path.write_text("X_ONE=plain\nX_TWO=has space; $(not run)\n")
    script = shell_exports(path) + '\nprintf "%s|%s" "$X_ONE" "$X_TWO"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == "plain|has space; $(not run)"


def test_python_m_serve_app_env_prints_the_shipped_settings():
    done = subprocess.run(
        [sys.executable, "-m", "serve_app", "env"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "export RAY_SERVE_THROUGHPUT_OPTIMIZED=1" in done.stdout.splitlines()
