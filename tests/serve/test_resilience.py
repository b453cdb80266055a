"""Fault rules through Ray Serve over HTTP: a stalled streaming expert ends within its deadline, a failing expert's
circuit opens and closes, failover names the expert that answered, and a learner killed (by pid) during a stream
of feedback loses nothing acknowledged.

The stalling and failing experts are OpenAI-compatible backends (the configured switch, `backend.kind: openai`)
pointed at a small HTTP server in this process whose mode the test sets: "ok" answers, "down" answers 503,
"stall" sends its headers (and, when streaming, one piece) and then nothing.
"""

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import EXPERT_FIGURES, stop_actors
from training.online.outcome_store import OutcomeStore

pytestmark = pytest.mark.serve

NAMESPACE = "routerllm-test-resilience"
ACTOR = "routerllm-learner-resilience"
ASK = [{"role": "user", "content": "alpha beta"}]
IDLE_S, DEADLINE_S, ATTEMPT_S = 1.5, 8.0, 2.0


class Endpoint(ThreadingHTTPServer):
    """An OpenAI-compatible endpoint on a free port whose behaviour the test sets with `mode`."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"
        self.hits = 0
        self.release = threading.Event()  # set at teardown: stalled handlers return
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):  # noqa: N802 - http.server's name
        server: Endpoint = self.server
        server.hits += 1
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if server.mode == "down":
            self._send(503, "application/json", b'{"error": {"message": "overloaded"}}')
        elif body.get("stream"):
            self._stream(server)
        elif server.mode == "stall":
            server.release.wait(60)  # no headers, no body
        else:
            answer = {
                "choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1},
            }
            self._send(200, "application/json", json.dumps(answer).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, server: Endpoint) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        piece = {"choices": [{"delta": {"content": "first"}, "finish_reason": None}]}
        self.wfile.write(f"data: {json.dumps(piece)}\n\n".encode())
        self.wfile.flush()
        if server.mode == "stall":
            server.release.wait(60)
            return
        self.wfile.write(b"data: [DONE]\n\n")


def _expert(name: str, backend: dict, quality: float) -> dict:
    figures = {**EXPERT_FIGURES, "quality_prior": quality}
    return {"name": name, "backend": backend, "price_in_per_1k": 0.001, "price_out_per_1k": 0.002, **figures}


@pytest.fixture(scope="module")
def endpoints():
    stall, flaky = Endpoint(), Endpoint()
    yield stall, flaky
    for e in (stall, flaky):
        e.release.set()
        e.shutdown()


@pytest.fixture(scope="module")
def url(ray_session, endpoints, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resilience")
    stall, flaky = endpoints
    echo = {"kind": "vllm", "model": "packaged:all-minilm-l6-v2", "engine_module": "experts.fake_vllm"}
    graph = {
        "server": {
            "request_timeout_s": ATTEMPT_S,
            "request_deadline_s": DEADLINE_S,
            "stream_idle_timeout_s": IDLE_S,
            "retries": 1,
            "retry_backoff_s": 0.1,
            "circuit_breaker": {"failures": 2, "window_s": 60, "cooldown_s": 3},
        },
        "embedding": {"num_cpus": 0.1, "threads": 1},
        # moe's cold start routes by the quality priors: stall (0.9) first, then echo (0.5), then flaky.
        "router": {"strategies": {"moe": {"hidden": [8], "seed": 0}}, "default_strategy": "moe", "num_cpus": 0.1},
        "carbon": {"measure_with_codecarbon": False},
        "experts": [
            _expert("stall", {"kind": "openai", "model": "m", "base_url": stall.base_url, "timeout_s": 30}, 0.9),
            _expert("echo", echo, 0.5),
            _expert("flaky", {"kind": "openai", "model": "m", "base_url": flaky.base_url, "timeout_s": 30}, 0.1),
        ],
        "learner": {
            "actor_name": ACTOR,
            "namespace": NAMESPACE,
            "num_cpus": 0.1,
            "record_timeout_s": 2,
            "training": {
                "store_path": str(tmp / "outcomes.db"),
                "checkpoint_dir": str(tmp / "policies"),
                "strategies": {"moe": {"config": {"hidden": [8], "seed": 0}, "epsilon_start": 0, "epsilon_end": 0}},
                "publish_every_s": None,
                "publish_every_updates": 1000,
            },
        },
    }
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    serve.run(build_app(config), name="routerllm-resilience", route_prefix="/")
    yield ray_session, tmp / "outcomes.db"
    serve.delete("routerllm-resilience")
    stop_actors(NAMESPACE, ACTOR)


def post(base: str, path: str, body: dict, timeout: float = 60) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=timeout)


def sse(base: str, body: dict) -> tuple[httpx.Response, list[str], float]:
    """A streamed chat: the response, its data lines, and the seconds it took to end."""
    started = time.perf_counter()
    with httpx.stream("POST", base + "/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        lines = []
        if r.status_code == 200:
            lines = [line for line in r.iter_lines() if line.startswith("data:")]
        else:
            r.read()
    return r, lines, time.perf_counter() - started


def test_a_stalled_stream_ends_with_an_error_event_within_its_idle_timeout(url, endpoints):
    base, _ = url
    endpoints[0].mode = "stall"
    r, lines, seconds = sse(base, {"model": "stall", "messages": ASK})
    assert r.status_code == 200 and r.headers["x-router-expert"] == "stall"
    assert json.loads(lines[0][5:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert json.loads(lines[1][5:])["choices"][0]["delta"] == {"content": "first"}
    error = json.loads(lines[-2][5:])["error"]
    assert "stall failed mid-stream" in error["message"] and "stalled" in error["message"], error
    assert lines[-1] == "data: [DONE]"
    assert IDLE_S <= seconds < DEADLINE_S, seconds  # ended by the stall rule, not a hang


def test_a_stalled_non_streamed_call_is_bounded_by_the_attempt_timeout_and_the_deadline(url, endpoints):
    base, _ = url
    endpoints[0].mode = "stall"
    started = time.perf_counter()
    r = post(base, "/v1/chat/completions", {"model": "stall", "messages": ASK})
    seconds = time.perf_counter() - started
    assert r.status_code == 503, r.text
    assert "stall: TimeoutError" in r.json()["error"]["message"]
    # One attempt, cut at its timeout: a timeout is transient, but it is stall's second failure (the stalled stream
    # was the first), which opens its circuit, and an open circuit is not retried.
    assert ATTEMPT_S <= seconds < 2 * ATTEMPT_S, seconds
    assert _circuit(base, "stall") == "open"


def test_a_stream_whose_first_choice_fails_before_any_byte_fails_over_and_the_headers_say_so(url, endpoints):
    base, _ = url
    endpoints[0].mode = "down"  # stall is the router's first choice (best quality prior); its circuit is open now
    r, lines, _ = sse(base, {"messages": ASK})
    assert r.status_code == 200
    assert r.headers["x-router-expert"] == "echo" and r.headers["x-router-failover-from"] == "stall"
    routing = json.loads(lines[-2][5:])["routing"]
    assert routing["expert"] == "echo" == json.loads(lines[0][5:])["model"]
    assert routing["failover_from"][0]["expert"] == "stall"
    # Named directly there is nothing to fail over to: a plain 503 before any byte, not a 200 stream.
    r, lines, _ = sse(base, {"model": "stall", "messages": ASK})
    assert r.status_code == 503 and r.json()["error"]["code"] == "expert_unavailable" and lines == []


def _circuit(base: str, name: str) -> str:
    health = httpx.get(base + "/healthz", timeout=30).json()
    experts = {e["name"]: e for e in httpx.get(base + "/v1/experts", timeout=30).json()["experts"]}
    assert experts[name]["circuit"]["state"] == health["circuits"][name]
    return health["circuits"][name]


def test_the_circuit_opens_after_failures_skips_the_expert_then_a_probe_closes_it(url, endpoints):
    base, _ = url
    flaky = endpoints[1]
    flaky.mode = "down"
    r = post(base, "/v1/chat/completions", {"model": "flaky", "messages": ASK})
    assert r.status_code == 503 and "endpoint answered 503" in r.json()["error"]["message"]
    assert flaky.hits == 2  # a 503 is transient: tried, retried once, and the two failures open the circuit
    assert _circuit(base, "flaky") == "open"
    assert httpx.get(base + "/healthz", timeout=30).json()["status"] == "degraded"
    r = post(base, "/v1/chat/completions", {"model": "flaky", "messages": ASK})
    assert r.status_code == 503 and "CircuitOpenError" in r.json()["error"]["message"]
    assert flaky.hits == 2  # skipped without a call
    flaky.mode = "ok"
    time.sleep(3.2)  # the cooldown
    assert _circuit(base, "flaky") == "half_open"
    r = post(base, "/v1/chat/completions", {"model": "flaky", "messages": ASK})
    assert r.status_code == 200, r.text
    assert flaky.hits == 3 and _circuit(base, "flaky") == "closed"


def _chat_ids(base: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = post(base, "/v1/chat/completions", {"messages": ASK, "max_tokens": 4})
        assert r.status_code == 200 and r.json()["routing"]["feedback"] == "accepted", r.text
        ids.append(r.json()["id"])
    return ids


def _learner_pid(base: str, timeout_s: float = 120) -> int:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        r = httpx.get(base + "/v1/learner/status", timeout=30)
        if r.status_code == 200:
            return r.json()["actor"]["pid"]
        time.sleep(0.5)
    raise AssertionError("the learner did not come back")


def _feedback_across_a_kill(base: str, n: int = 24, kill_at: int = 6) -> dict[str, tuple[float, httpx.Response]]:
    """Feedback on `n` fresh answers across a learner's death; request id -> (score sent, response). Before the
    `kill_at`-th the learner is frozen (SIGSTOP), so that feedback surely outlasts `record_timeout_s` and meets the
    refusal path whatever the machine's speed (a restart alone can be quicker than the timeout); before the next
    one it is killed (SIGKILL) and Ray restarts it, retrying the calls it had queued. Returns once the restarted
    learner answers again."""
    ids = _chat_ids(base, n)
    pid = _learner_pid(base)
    answers = {}
    for i, rid in enumerate(ids):
        if i == kill_at:
            os.kill(pid, signal.SIGSTOP)  # alive to Ray, deaf to its calls
        if i == kill_at + 1:
            os.kill(pid, signal.SIGKILL)  # mid-stream: Ray restarts the detached actor
        score = 0.25 + i / 100
        answers[rid] = score, post(base, "/v1/feedback", {"request_id": rid, "score": score})
        if i == kill_at + 2:  # serving goes on without the learner: the answer comes, its feedback is unavailable
            during = post(base, "/v1/chat/completions", {"messages": ASK, "max_tokens": 4})
            assert during.status_code == 200, during.text
    assert _learner_pid(base) != pid
    return answers


def test_a_learner_killed_during_feedback_loses_nothing_acknowledged(url, endpoints):
    base, store_path = url
    endpoints[0].mode = "ok"
    answers = _feedback_across_a_kill(base)
    acknowledged = {rid for rid, (_, r) in answers.items() if r.status_code == 200}
    refused = {rid: r for rid, (_, r) in answers.items() if r.status_code != 200}
    for r in refused.values():
        assert r.status_code == 503 and r.json()["error"]["code"] == "learner_unavailable", r.text
        assert "may or may not be recorded" in r.json()["error"]["message"]
    assert refused, "no feedback met the frozen learner"
    # What the 503 says is true: sent again, each refused score is recorded now (200) or was already (409).
    for rid in refused:
        again = post(base, "/v1/feedback", {"request_id": rid, "score": 0.9})
        assert again.status_code in (200, 409), again.text
    stored = {e.outcome.request_id: e.score for e in OutcomeStore(store_path).experiences_after(0)}
    for rid, (score, _) in answers.items():
        if rid in acknowledged:
            assert stored[rid] == pytest.approx(score)  # every acknowledged score, as sent
        assert rid in stored
