# One-command entry points; see README.md.
VENV := .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PREFECT_HOME := $(abspath .prefect)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export DVC_SITE_CACHE_DIR := $(abspath .dvc-site-cache)

.PHONY: install reproduce test test-slow lint serve stop

install: $(VENV)/.installed

# torch first and pinned: pip then takes the CPU wheel on disk instead of a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

# one Prefect server for the run (reused if `make serve` runs one); stages are child runs
reproduce: install
	python -m flows.reproduce

lint: install
	ruff check .

test: install lint
	pytest -q -m "not slow"

# end-to-end: Prefect server + worker, full tiny dvc repro, Dask/Ray clusters, DVC push/pull
test-slow: install
	pytest -q -m slow

# local Prefect server (127.0.0.1 only), work pool, deployments and worker; see README
serve: install
	scripts/serve.sh

stop:
	scripts/stop.sh

# vLLM's own environment for `backend.name: vllm` (4.2 GB; it cannot share .venv): see scripts/
.PHONY: vllm-env
vllm-env: .venv-vllm/.installed

.venv-vllm/.installed: scripts/install_vllm.sh
	scripts/install_vllm.sh .venv-vllm
