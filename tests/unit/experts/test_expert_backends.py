"""Each expert backend, called directly: real generation, the fake-engine vLLM wiring, and a real HTTP endpoint."""

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse

from experts.base import ExpertError, GenerationRequest, build_backend
from experts.catalog import ExpertSpec

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def spec(backend: dict, **kw) -> ExpertSpec:
    fields = dict(
        name="e",
        backend=backend,
        params_b=1,
        price_in_per_1k=0.001,
        price_out_per_1k=0.002,
        energy_per_token_j=1,
        expected_latency_s=1,
        quality_prior=0.5,
        max_new_tokens=8,
    )
    fields.update(kw)
    return ExpertSpec(**fields)


def run(coro):
    return asyncio.run(coro)


async def collect(backend, request):
    return [chunk async for chunk in backend.stream(request)]


# --- transformers: a real model -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm():
    backend = build_backend(spec({"kind": "transformers", "model": "packaged:smollm2-135m-instruct"}))
    run(backend.start())
    return backend


def test_transformers_generates_real_text(smollm):
    result = run(smollm.generate(GenerationRequest(messages=ASK, temperature=0)))
    assert "Paris" in result.text
    assert result.tokens_in > 10 and 0 < result.tokens_out <= 8
    assert result.latency_s > 0


def test_transformers_streams_the_same_text_it_generates(smollm):
    request = GenerationRequest(messages=ASK, temperature=0, max_tokens=6)
    whole = run(smollm.generate(request))
    chunks = run(collect(smollm, request))
    assert chunks[-1].result is not None and chunks[-1].result.tokens_out == whole.tokens_out
    assert "".join(c.delta for c in chunks).strip() == whole.text


def test_transformers_caps_tokens_at_the_expert_limit(smollm):
    result = run(smollm.generate(GenerationRequest(messages=ASK, temperature=0, max_tokens=10_000)))
    assert result.tokens_out <= 8


# --- vllm: the production wiring, engine swapped by config ---------------------------------------------
FAKE_VLLM = {"kind": "vllm", "model": "packaged:all-minilm-l6-v2", "engine_module": "experts.fake_vllm"}


def test_vllm_backend_runs_through_the_engine_module_switch():
    backend = build_backend(spec(FAKE_VLLM))
    run(backend.start())
    assert type(backend.engine).__module__ == "experts.fake_vllm"
    chunks = run(collect(backend, GenerationRequest(messages=[{"role": "user", "content": "one two three"}])))
    result = chunks[-1].result
    assert result.text == "echo: user: one two three"
    assert "".join(c.delta for c in chunks[:-1]).replace(" ", "") == result.text.replace(" ", "")
    assert result.tokens_out == 5 and result.tokens_in > 0


def test_vllm_backend_aborts_the_engine_request_when_the_client_leaves():
    backend = build_backend(spec(FAKE_VLLM))
    run(backend.start())

    async def leave_early():
        stream = backend.stream(GenerationRequest(messages=ASK, request_id="r1"))
        await stream.__anext__()
        await stream.aclose()

    run(leave_early())
    assert backend.engine.aborted == ["r1"]


def test_vllm_backend_without_vllm_says_how_to_install_it():
    backend = build_backend(spec({**FAKE_VLLM, "engine_module": "vllm_not_installed_here"}))
    with pytest.raises(ExpertError, match=r"pip install '\.\[gpu\]'"):
        run(backend.start())


# --- openai: a real HTTP endpoint on loopback ----------------------------------------------------------
def _fake_openai_app() -> FastAPI:
    api = FastAPI()

    @api.post("/v1/chat/completions")
    async def chat(body: dict):
        if body["model"] == "broken":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        words = ["Paris", " is", " the", " capital"][: body["max_tokens"]]
        if not body.get("stream"):
            return {
                "choices": [{"message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": len(words)},
            }

        def events():
            for w in words:
                yield f"data: {json.dumps({'choices': [{'delta': {'content': w}, 'finish_reason': None}]})}\n\n"
            done = {"choices": [{"delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(done)}\n\n"
            yield f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': 7, 'completion_tokens': 4}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(_fake_openai_app(), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(5)


def openai_backend(base_url: str, model: str = "m"):
    backend = build_backend(spec({"kind": "openai", "model": model, "base_url": base_url}))
    return backend


def test_openai_backend_generates_and_reports_usage(endpoint):
    async def go():
        backend = openai_backend(endpoint)
        await backend.start()
        return await backend.generate(GenerationRequest(messages=ASK))

    result = run(go())
    assert result.text == "Paris is the capital"
    assert (result.tokens_in, result.tokens_out) == (7, 4)


def test_openai_backend_streams(endpoint):
    async def go():
        backend = openai_backend(endpoint)
        await backend.start()
        return await collect(backend, GenerationRequest(messages=ASK))

    chunks = run(go())
    assert [c.delta for c in chunks[:-1]] == ["Paris", " is", " the", " capital"]
    assert chunks[-1].result.tokens_out == 4 and chunks[-1].result.text == "Paris is the capital"


def test_openai_backend_errors_are_clear(endpoint):
    async def go(base_url, model):
        backend = openai_backend(base_url, model)
        await backend.start()
        return await backend.generate(GenerationRequest(messages=ASK))

    with pytest.raises(ExpertError, match="answered 500"):
        run(go(endpoint, "broken"))
    with pytest.raises(ExpertError, match="unreachable"):
        run(go(f"http://127.0.0.1:{_free_port()}/v1", "m"))


def test_openai_backend_needs_its_api_key(monkeypatch):
    monkeypatch.delenv("ROUTERLLM_TEST_KEY", raising=False)
    backend = build_backend(
        spec({"kind": "openai", "model": "m", "base_url": "http://x/v1", "api_key_env": "ROUTERLLM_TEST_KEY"})
    )
    with pytest.raises(ExpertError, match="ROUTERLLM_TEST_KEY"):
        run(backend.start())


def test_sampling_defaults_come_from_the_catalog_unless_the_request_sets_them():
    endpoint = {"kind": "openai", "model": "m", "base_url": "http://x/v1"}
    openai = build_backend(spec(endpoint, temperature=0.2, top_p=0.9))
    body = openai._body(GenerationRequest(messages=ASK), stream=False)
    assert (body["temperature"], body["top_p"]) == (0.2, 0.9)
    body = openai._body(GenerationRequest(messages=ASK, temperature=0.0, top_p=0.5), stream=False)
    assert (body["temperature"], body["top_p"]) == (0.0, 0.5)  # an explicit 0 (greedy) is kept, not defaulted
    vllm = build_backend(spec(FAKE_VLLM, temperature=0.3))
    assert vllm.sampling(GenerationRequest(messages=ASK)) == (0.3, 1.0)
