# mftt — one-command set-up. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU build by default; on a GPU box: make TORCH=torch
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
unexport PYTHONDONTWRITEBYTECODE
export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE=disabled
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export OMP_NUM_THREADS ?= 1

FIND_LINKS := $(shell pip config get global.find-links 2>/dev/null)
EXTRA_INDEX := $(shell pip config get global.extra-index-url 2>/dev/null)
UV_FLAGS := --index-strategy unsafe-best-match $(foreach f,$(FIND_LINKS),--find-links $(f)) $(foreach u,$(EXTRA_INDEX),--extra-index-url $(u))

.PHONY: install demo test lint test-fast test-slow e2e bench app clean gpu-check
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) "$(TORCH)" -e ".[dev,e2e]"
	touch $(STAMP)

demo: install  ## the main job: the comparison suite with known answers, then constant vs feedback weights across scenarios on a local embedded Ray
	$(BIN)/mftt compare --suite quick --workers 2 --json results/compare_quick.json examples/configs/demo.toml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 --dist worksteal -q

test-slow: install  # exit 5 (no test selected) is not a failure; the Ray clusters run alone, the rest on 2 workers
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "slow and not ray"; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]
	$(BIN)/python -m pytest -q -m "slow and ray"; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

e2e: install
	$(BIN)/python -m pytest -q -m "e2e" tests/e2e; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

bench: install  ## torchode (benchmark-only comparator) pins typeguard 2.x, so it is kept out of the main install
	$(BIN)/uv pip install -q --python $(BIN)/python $(UV_FLAGS) "$(TORCH)" -e ".[bench]"
	env -u OMP_NUM_THREADS $(BIN)/python -m benchmarks.run

gpu-check: install  ## on a GPU machine (make TORCH=torch gpu-check): gpu tests, games on CUDA, field vs matmul peak
	$(BIN)/python -m benchmarks.gpu --out $(or $(GPU_OUT),benchmarks/GPU.md)

app: install
	$(BIN)/python app/serve.py app/streamlit_app.py --server.headless true --server.address 127.0.0.1 --server.port 8501 --browser.gatherUsageStats false --client.toolbarMode minimal

clean:
	rm -rf $(VENV) results .pytest_cache
