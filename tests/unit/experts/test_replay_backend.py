"""The replay expert answers recorded prompts with the recorded answer, score and cost, through build_backend."""

from __future__ import annotations

import asyncio

import pytest

from experts.base import ExpertError, GenerationRequest, build_backend
from experts.catalog import ExpertSpec, ReplayBackendConfig
from experts.replay_backend import ReplayBackend, estimate_tokens
from training.data.routerbench import load_routerbench, response_text

MODEL = "mistralai/mistral-7b-chat"


def replay_spec(data, model=MODEL) -> ExpertSpec:
    return ExpertSpec(
        name="mistral-7b-chat",
        backend=ReplayBackendConfig(data=str(data), model=model),
        params_b=7,
        price_in_per_1k=0.0002,
        price_out_per_1k=0.0002,
        energy_per_token_j=0.35,
        expected_latency_s=1.0,
        quality_prior=0.5,
    )


def ask(backend, text: str):
    return asyncio.run(backend.generate(GenerationRequest(messages=[{"role": "user", "content": text}])))


@pytest.fixture(scope="module")
def mbpp(routerbench_dir):
    path = routerbench_dir / "mbpp_train.csv"
    return path, load_routerbench(path, [MODEL])


@pytest.mark.data
def test_replays_the_recorded_answer_score_and_cost(mbpp):
    path, table = mbpp
    backend = build_backend(replay_spec(path))
    assert isinstance(backend, ReplayBackend)
    asyncio.run(backend.start())
    row = 7
    result = ask(backend, table.prompts[row])
    assert result.text == response_text(table.responses[row][0])
    assert not result.text.startswith("['")  # the list literal is unwrapped
    assert result.extra == {
        "score": pytest.approx(float(table.scores[row, 0])),
        "cost_usd": pytest.approx(float(table.costs[row, 0])),
        "sample_id": table.sample_ids[row],
        "task": "mbpp",
    }
    assert result.tokens_in == estimate_tokens(table.prompts[row]) > 0
    assert result.tokens_out == estimate_tokens(result.text)
    assert result.latency_s >= 0


@pytest.mark.data
def test_matches_a_system_message_plus_the_prompt_as_last_user_message(mbpp):
    path, table = mbpp
    backend = build_backend(replay_spec(path))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": table.prompts[3]}]
    result = asyncio.run(backend.generate(GenerationRequest(messages=messages)))  # starts lazily
    assert result.extra["sample_id"] == table.sample_ids[3]


@pytest.mark.data
def test_unknown_prompt_is_an_expert_error(mbpp):
    path, _ = mbpp
    backend = build_backend(replay_spec(path))
    with pytest.raises(ExpertError, match="not recorded"):
        ask(backend, "What is the capital of France?")


@pytest.mark.data
def test_unknown_model_or_missing_data_fail_at_start(mbpp, tmp_path):
    path, _ = mbpp
    with pytest.raises(ExpertError, match="Available models"):
        asyncio.run(build_backend(replay_spec(path, model="no/such-model")).start())
    with pytest.raises(ExpertError, match="cannot read"):
        asyncio.run(build_backend(replay_spec(tmp_path / "missing.csv")).start())


def test_multi_part_prompts_match_when_sent_as_several_user_messages(tmp_path):
    # A hand-written two-row table in the RouterBench format; the first prompt has two parts.
    path = tmp_path / "tiny.csv"
    path.write_text(
        "sample_id,prompt,eval_name,m-7b,m-7b|model_response,m-7b|total_cost\n"
        "a.1,\"['Context.', 'Question?']\",demo,1,\"['Answer A']\",0.001\n"
        "b.2,\"['Other?']\",demo,0,\"['Answer B']\",0.002\n"
    )
    backend = build_backend(replay_spec(path, model="m-7b"))
    parts = [{"role": "user", "content": "Context."}, {"role": "user", "content": "Question?"}]
    result = asyncio.run(backend.generate(GenerationRequest(messages=parts)))
    assert (result.text, result.extra["sample_id"], result.extra["score"]) == ("Answer A", "a.1", 1.0)
    assert ask(backend, "Context.\nQuestion?").extra["sample_id"] == "a.1"
    assert ask(backend, "Other?").extra == {
        "score": 0.0,
        "cost_usd": pytest.approx(0.002),
        "sample_id": "b.2",
        "task": "demo",
    }
