# Conveyor: `make demo` then `make test`. Everything is installed from uv.lock.
SHELL := /bin/bash
# uv on PATH if present, else the one `make uv` installs with pip (evaluated lazily).
UV = $(if $(shell command -v uv 2>/dev/null),uv,python3 -m uv)
export CONVEYOR_PROJECT_DIR ?= $(CURDIR)
export CONVEYOR_HOME ?= $(CURDIR)/.conveyor
export GX_ANALYTICS_ENABLED = false
export DVC_NO_ANALYTICS = 1
export MLFLOW_DISABLE_TELEMETRY = true
export DO_NOT_TRACK = 1
PYTEST_ARGS ?=

.PHONY: help uv system-deps test-distributed test-compat install demo demo-init demo-up demo-run stop status new-data traffic test lint format bench bench-scale clean

help:
	@echo "make demo   install, create the demo, start Airflow + MLflow UI, train breast_cancer, serve it"
	@echo "make stop   stop everything make demo started"
	@echo "make test   install and run ruff + the whole test suite"
	@echo "make new-data [DRIFT=1]  push a new demo data version (a running Airflow retrains)"
	@echo "make traffic [DRIFT=1]   send requests to the model service, then run the monitor"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make bench-scale  the long runs: 500 pipelines, 50 models in one service, scoring 10M rows"
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

traffic:
	$(UV) run --frozen conveyor demo traffic $(if $(DRIFT),--drift,)

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

# Debian packages the system tests need: postgresql and redis-server (the distributed
# runtime, tests/system/test_distributed.py) and chromium (the browser test). A package is
# missing when dpkg does not list it as installed or its program is not found. Installed
# only where we may (root with apt-get, as in CI); elsewhere the tests that need them skip
# with the install command -- except under CI=true, where they fail.
SYSTEM_PACKAGES := postgresql redis-server chromium
system-deps:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
	  case $$pkg in \
	    postgresql) found=$$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null || command -v initdb);; \
	    *) found=$$(command -v $$pkg);; \
	  esac; \
	  if [ -z "$$found" ]; then missing="$$missing $$pkg"; \
	  elif command -v dpkg-query >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
	    && ! dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed'; then \
	    missing="$$missing $$pkg"; fi; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends $$missing >/dev/null || exit 1; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null && command -v chromium >/dev/null \
	    || { echo "system-deps: installed$$missing but a program is still missing" >&2; exit 1; }; \
	else echo "Missing Debian packages:$$missing (as root: apt-get install -y$$missing; the tests that need them skip, or fail under CI=true)"; fi

# The distributed runtime alone (also part of `make test`).
test-distributed: install system-deps
	$(UV) run --frozen pytest tests/system/test_compose.py tests/system/test_distributed.py $(PYTEST_ARGS)

test: lint system-deps
	$(UV) run --frozen pytest $(PYTEST_ARGS)

bench: install
	$(UV) run --frozen python bench/run_all.py

# The long runs (bench/run_all.py --scale): 500 generated pipelines on one Airflow
# (bench/scale.py), many models in one model-service process (bench/multi_model.py) and
# batch scoring at 10M rows (needs ~10 GB of disk for the CSV and its DVC copies).
bench-scale: install
	$(UV) run --frozen python bench/run_all.py --scale

clean:
	rm -rf .conveyor

# The wheel installed into fresh virtualenvs beside each supported Airflow minor (make test
# runs the floor, 3.1, only).
test-compat: install
	CONVEYOR_COMPAT_AIRFLOW='apache-airflow>=3.1.8,<3.2' $(UV) run --frozen pytest tests/compat $(PYTEST_ARGS)
	# Airflow 3.2.2 itself fails at run time with fastapi>=0.137 or svcs>=26 (3.3 caps them)
	CONVEYOR_COMPAT_AIRFLOW='apache-airflow>=3.2,<3.3 fastapi<0.137 svcs<26' $(UV) run --frozen pytest tests/compat $(PYTEST_ARGS)
