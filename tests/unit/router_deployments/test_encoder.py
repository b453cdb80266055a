"""The sentence encoder: unit vectors, truncation that keeps the prompt's end, ONNX Runtime equal to PyTorch."""

import logging

import numpy as np
import pytest

from router_deployments import encoder as encoder_module
from router_deployments.encoder import EncoderRuntimeError, SentenceEncoder

TEXTS = [
    "hi",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Question: which gas do plants take in? " * 80 + "Answer with one word.",  # longer than max_length
]


@pytest.fixture(scope="module")
def torch_encoder():
    return SentenceEncoder(max_length=64, runtime="torch")


@pytest.fixture(scope="module")
def onnx_encoder():
    return SentenceEncoder(max_length=64, runtime="onnx", threads=1)


def test_unit_vectors_of_the_model_width(onnx_encoder):
    vectors = onnx_encoder.encode(TEXTS)
    assert onnx_encoder.runtime == "onnx"
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_onnx_gives_the_pytorch_vectors(torch_encoder, onnx_encoder, batch_size):
    """Same vectors whatever the padding in the batch (the export is checked, not trusted)."""
    expected = torch_encoder.encode(TEXTS, batch_size)
    got = onnx_encoder.encode(TEXTS, batch_size)
    assert np.abs(got - expected).max() < 1e-4


def test_truncation_keeps_the_end(onnx_encoder):
    prefix = "An unrelated few-shot example about the weather in Paris. " * 40
    question = "Write a Python function that returns the n-th Fibonacci number."
    a, b = onnx_encoder.encode([prefix + question, question])
    c = onnx_encoder.encode(["What is the boiling point of water at sea level in Kelvin?"])[0]
    assert a @ b > a @ c


def test_unknown_runtime_is_an_error():
    with pytest.raises(ValueError, match="runtime"):
        SentenceEncoder(runtime="tensorrt")


def test_an_onnx_mismatch_is_an_error_or_a_logged_fallback(monkeypatch, caplog):
    monkeypatch.setattr(encoder_module, "ONNX_TOLERANCE", -1.0)  # no export can pass this check
    with pytest.raises(EncoderRuntimeError, match="differ"):
        SentenceEncoder(max_length=32, runtime="onnx")
    with caplog.at_level(logging.WARNING, logger="router_deployments.encoder"):
        fallback = SentenceEncoder(max_length=32, runtime="auto")
    assert fallback.runtime == "torch"
    assert "stays on PyTorch" in caplog.text


def test_length_buckets_cut_a_sorted_batch_where_padding_costs_more_than_a_call():
    from router_deployments.encoder import length_buckets

    assert length_buckets([], 8) == []
    assert length_buckets([10] * 5, 8) == [(0, 5)]  # no padding: one call
    runs = length_buckets([10] * 5, 2)  # at most max_size per call, consecutive, covering the batch
    assert len(runs) == 3 and all(stop - start <= 2 for start, stop in runs)
    assert runs[0][0] == 0 and runs[-1][1] == 5 and all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
    # Two short prompts and two long ones: padding the short ones to 200 would cost 380 tokens, a call 13.
    assert length_buckets([5, 6, 200, 210], 8) == [(0, 2), (2, 4)]
    # Close lengths stay together: splitting saves 2 padded tokens and costs a call.
    assert length_buckets([10, 11, 12], 8) == [(0, 3)]


def test_runs_of_similar_length_give_each_prompt_its_own_vector(onnx_encoder):
    """Cutting a mixed batch into runs changes nothing but the padding: every vector is the one it gets alone."""
    texts = [TEXTS[i % 3] + f" ({i})" for i in range(9)]
    together = onnx_encoder.encode(texts, 64)
    alone = np.stack([onnx_encoder.encode([t])[0] for t in texts])
    assert np.abs(together - alone).max() < 1e-5
