# corral: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck unit bench clean docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.txt
	$(BIN)/python -m pip install -q -r requirements-test.txt
	# Server subprocesses measure coverage too: coverage's own a1_coverage.pth starts it in
	# every interpreter when COVERAGE_PROCESS_START is set (see the unit target).
	touch $@

run: $(VENV)/.installed
	cd examples && ../$(BIN)/corral --workers 2 --bind 127.0.0.1:8000 hello:application

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

# Three test processes (pytest-xdist), each taking whole modules: most tests wait on real
# servers and clients rather than compute, so this roughly halves the wall time on two cores.
unit: $(VENV)/.test-installed
	rm -rf .coverage && mkdir -p .coverage
	COVERAGE_PROCESS_START=$(CURDIR)/pyproject.toml $(BIN)/coverage run -m pytest -q -n 3 --dist loadfile
	$(BIN)/coverage combine -q
	$(BIN)/coverage report --sort=cover | tail -n 25

test: lint typecheck unit

# The side-by-side benchmark against Gunicorn and other servers (see bench/README.md): it
# installs its own tools and peers, takes ~28 minutes, and is never part of `make test`.
# `make bench BENCH_ARGS=--quick` for a smoke run.
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The reliability suite in its full form (tests/reliability with CORRAL_SOAK=1): a million
# requests against one worker, 2 GiB transfers, 30 s of worker kills, ... About 10 minutes;
# ends with the table of figures. `make test` runs the same scenarios in their short form.
.PHONY: soak
soak: $(VENV)/.test-installed
	CORRAL_SOAK=1 $(BIN)/python -m pytest tests/reliability -q -rxX --timeout 1800

# Autobahn|Testsuite, the WebSocket conformance suite, against the asgi worker: every case of
# sections 1-10, 12 and 13, then the table of outcomes and each case that is not OK (about
# 20 minutes on 2 cores, mostly permessage-deflate). It first builds the suite's Python 2.7
# virtualenv (docs/autobahn.md). `make test` runs sections 1-10 and a subset of 12 and 13.
.PHONY: autobahn
autobahn: $(VENV)/.test-installed
	$(BIN)/python tests/support/autobahn_env.py install
	$(BIN)/python tests/support/autobahn.py $(AUTOBAHN_ARGS)

docs: $(VENV)/.installed
	$(BIN)/python -m corral.config.reference > docs/settings.md

clean:
	rm -rf $(VENV) build src/*.egg-info
