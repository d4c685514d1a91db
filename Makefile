# Conveyor: `make demo` then `make test`. Everything is installed from uv.lock.
SHELL := /bin/bash
# uv on PATH if present, else the one `make uv` installs with pip (evaluated lazily).
UV = $(if $(shell command -v uv 2>/dev/null),uv,python3 -m uv)
export CONVEYOR_HOME ?= $(CURDIR)/.conveyor
export GX_ANALYTICS_ENABLED = false
export DVC_NO_ANALYTICS = 1
export MLFLOW_DISABLE_TELEMETRY = true
export DO_NOT_TRACK = 1
PYTEST_ARGS ?=

.PHONY: help uv system-deps test-distributed install demo demo-init demo-up demo-run stop status new-data test lint format bench clean

help:
	@echo "make demo   install, create the demo, start Airflow + MLflow UI, train breast_cancer, serve it"
	@echo "make stop   stop everything make demo started"
	@echo "make test   install and run ruff + the whole test suite"
	@echo "make new-data [DRIFT=1]  push a new demo data version (a running Airflow retrains)"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make clean  remove all runtime state (.conveyor/)"

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

install: uv
	$(UV) sync --frozen --compile-bytecode

demo: install demo-init demo-up

demo-init:
	$(UV) run --frozen conveyor demo init

demo-up:
	$(UV) run --frozen conveyor demo up --pipeline breast_cancer

# The same training without any server: Airflow's dag.test() in one process.
demo-run:
	$(UV) run --frozen conveyor demo run --pipeline breast_cancer

stop:
	@if [ -x .venv/bin/conveyor ]; then .venv/bin/conveyor down; else echo "nothing to stop"; fi

status:
	$(UV) run --frozen conveyor status

new-data:
	$(UV) run --frozen conveyor demo new-data $(if $(DRIFT),--drift,)

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

# Debian packages some system tests need (distributed runtime, browser test); installed
# only when missing, and only where we may (root with apt-get, as in CI).
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "Missing Debian packages:$$missing (install them with apt-get; the tests that need them will fail)"; fi; \
	fi

test-distributed: install system-deps
	CONVEYOR_DISTRIBUTED_TESTS=1 $(UV) run --frozen pytest tests/system/test_compose.py tests/system/test_distributed.py

test: lint system-deps
	$(UV) run --frozen pytest $(PYTEST_ARGS)

bench: install
	$(UV) run --frozen python bench/run_all.py

clean:
	rm -rf .conveyor
