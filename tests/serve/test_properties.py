"""Bad input at scale: hypothesis sends every endpoint of the running graph bodies, parameters and headers it made
up, from arbitrary JSON to near-valid requests; none may answer 5xx or hang, and the graph keeps serving.

The graph (module-scoped) has two fake-engine experts, which always answer, and a learner, so that feedback and
rollback reach the real store: any 5xx here is the server's fault, never an expert's. Example counts are bounded
(EXAMPLES per property) so the suite stays fast.
"""

import json
import string
from urllib.parse import quote

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ray import serve

from serve_app.builder import build_app
from serve_app.config import AppConfig
from tests.serve.conftest import EXPERT_FIGURES, stop_actors

pytestmark = pytest.mark.serve

EXAMPLES = 30
NAMESPACE = "routerllm-test-properties"
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible, the suite's time predictable
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TIMEOUT = httpx.Timeout(30.0)  # a hang is a failure (ReadTimeout), not a stuck suite
POSTS = ["/v1/chat/completions", "/v1/route", "/v1/feedback", "/admin/rollback"]
GETS = ["/healthz", "/v1/models", "/v1/experts", "/v1/router", "/v1/learner/status", "/ui"]


@pytest.fixture(scope="module")
def url(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("properties")
    engine = {"kind": "vllm", "model": "packaged:all-minilm-l6-v2", "engine_module": "experts.fake_vllm"}
    experts = [
        {"name": name, "backend": engine, "price_in_per_1k": 0.001, "price_out_per_1k": 0.002, **EXPERT_FIGURES}
        for name in ("echo_a", "echo_b")
    ]
    graph = {
        "server": {"max_prompt_chars": 2000},
        "embedding": {"num_cpus": 0.1, "threads": 1},
        "router": {
            "strategies": {"dummy": {"seed": 0}, "moe": {"hidden": [8], "seed": 0}},
            "default_strategy": "dummy",
            "num_cpus": 0.1,
        },
        "carbon": {"measure_with_codecarbon": False},
        "experts": experts,
        "learner": {
            "namespace": NAMESPACE,
            "num_cpus": 0.1,
            "training": {
                "store_path": str(tmp / "outcomes.db"),
                "checkpoint_dir": str(tmp / "policies"),
                "strategies": {"moe": {"config": {"hidden": [8], "seed": 0}}},
            },
        },
    }
    config = AppConfig.model_validate(yaml.safe_load(yaml.safe_dump(graph)))
    serve.run(build_app(config), name="routerllm-properties", route_prefix="/")
    yield ray_session
    serve.delete("routerllm-properties")
    stop_actors(NAMESPACE)


@pytest.fixture(scope="module")
def answered_ids(url) -> list[str]:
    """Ids of answered requests, so that feedback also meets ids that exist."""
    ids = []
    for _ in range(3):
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return ids


# --- what hypothesis sends ----------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["user", "system", "assistant", "tool", "developer", "robot", ""]) | st.text(max_size=8)
contents = (
    st.text(max_size=200)
    | st.none()
    | st.integers()
    | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=50)}), max_size=2)
)
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": contents}), max_size=4) | json_values
router_prefs = st.fixed_dictionaries(
    {},
    optional={
        "strategy": st.sampled_from(["dummy", "moe", "rl", "zzz"]) | json_values,
        "weights": st.dictionaries(st.sampled_from(["quality", "cost", "carbon", "latency", "x"]), scalars),
        "carbon_budget_left": scalars,
    },
)
valid_chat_bodies = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system"]), "content": st.text(min_size=1, max_size=100)}
            ),
            min_size=1,
            max_size=3,
        )
    },
    optional={
        "model": st.sampled_from(["router", "echo_a"]),
        "max_tokens": st.integers(1, 16),
        "temperature": st.floats(0, 2),
        "stream": st.booleans(),
        "router": st.fixed_dictionaries({}, optional={"strategy": st.sampled_from(["dummy", "moe"])}),
    },
)
fuzzy_chat_bodies = st.fixed_dictionaries(
    {"messages": messages},
    optional={
        "model": st.sampled_from(["router", "echo_a", "echo_b", "gpt-9", ""]) | json_values,
        "max_tokens": st.integers(-5, 10_000) | scalars,
        "temperature": st.floats(-1, 3) | scalars,
        "top_p": scalars,
        "stop": st.lists(st.text(max_size=10), max_size=6) | scalars,
        "seed": scalars,
        "n": st.integers(0, 3),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": scalars}) | json_values,
        "router": router_prefs | json_values,
        "prompt": scalars,
    },
)
chat_bodies = valid_chat_bodies | fuzzy_chat_bodies
feedback_bodies = st.fixed_dictionaries(
    {}, optional={"request_id": st.text(max_size=300) | json_values, "score": st.floats() | scalars}
)
rollback_bodies = st.fixed_dictionaries({}, optional={"strategy": st.sampled_from(["moe", "dummy", "x"]) | scalars})
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", ""]
)
query = st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8), st.text(max_size=20), max_size=3)


# --- the properties -----------------------------------------------------------------------------------------
def send(url: str, method: str, path: str, body=None, content_type="application/json", params=None):
    """One request; reads a streamed answer to its end (a stream that hangs fails by timeout)."""
    content = body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
    headers = {"content-type": content_type} if content_type else {}
    with httpx.stream(method, url + path, content=content, headers=headers, params=params, timeout=TIMEOUT) as response:
        response.read()
    return response


SEEN: dict[str, set[int]] = {}
"""Statuses seen per path: the last test checks the examples reached both the answering and the refusing code."""


def assert_no_5xx(response: httpx.Response) -> None:
    SEEN.setdefault(response.request.url.path, set()).add(response.status_code)
    assert response.status_code < 500, (response.request.url, response.status_code, response.text[:500])
    if response.status_code >= 400:  # a JSON error that says what went wrong: ours, or FastAPI's unknown route
        body = response.json()
        assert body.get("error", {}).get("message") or body.get("detail"), body


@PROPERTY
@given(body=chat_bodies)
def test_chat_completions_never_5xx(url, body):
    assert_no_5xx(send(url, "POST", "/v1/chat/completions", body))


@PROPERTY
@given(body=chat_bodies)
def test_route_never_5xx(url, body):
    assert_no_5xx(send(url, "POST", "/v1/route", body))


@PROPERTY
@given(body=feedback_bodies, which=st.integers(0, 3))
def test_feedback_never_5xx(url, answered_ids, body, which):
    if which < len(answered_ids) and isinstance(body.get("score"), float):
        body = {**body, "request_id": answered_ids[which]}  # an id that exists, with whatever score
    assert_no_5xx(send(url, "POST", "/v1/feedback", body))


@PROPERTY
@given(body=rollback_bodies)
def test_rollback_never_5xx(url, body):
    assert_no_5xx(send(url, "POST", "/admin/rollback", body))


@PROPERTY
@given(path=st.sampled_from(POSTS), body=json_values, content_type=content_types)
def test_any_json_with_any_content_type_never_5xx(url, path, body, content_type):
    assert_no_5xx(send(url, "POST", path, body, content_type))


@PROPERTY
@given(path=st.sampled_from(POSTS), raw=st.binary(max_size=300))
def test_raw_bytes_never_5xx(url, path, raw):
    assert_no_5xx(send(url, "POST", path, raw))


@PROPERTY
@given(path=st.sampled_from(GETS), params=query)
def test_get_endpoints_with_any_query_never_5xx(url, path, params):
    assert_no_5xx(send(url, "GET", path, params=params))


@PROPERTY
@given(name=st.text(max_size=30))
def test_console_assets_by_any_name_never_5xx(url, name):
    assert_no_5xx(send(url, "GET", "/ui/" + quote(name, safe="")))


def test_the_graph_keeps_serving_after_all_of_it(url):
    for path in ("/v1/chat/completions", "/v1/route"):
        assert 200 in SEEN[path] and 400 in SEEN[path], SEEN  # valid and invalid examples both reached the server
    assert {200, 422} <= SEEN["/v1/feedback"] and 415 in SEEN["/v1/route"], SEEN
    assert httpx.get(url + "/healthz", timeout=TIMEOUT).json()["status"] == "ok"
    r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "still here?"}]})
    assert r.status_code == 200, r.text
