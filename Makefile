# One entry point for the project's chores. `make help` lists them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo test lint typecheck contracts unit slow bench bench-distributed bench-http clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install magicflow with every extra and the dev tools

demo: $(STAMP)  ## run the user-onboarding demo workflow, embedded (SQLite + in-process broker)
	$(BIN)/magic-flow run examples/user-onboarding/workflow.yaml \
		--handlers examples/user-onboarding/handlers.py \
		--input '{"email": "Ada@Example.com", "plan": "pro"}'

lint: $(STAMP)  ## ruff (lint + format check)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)  ## mypy --strict
	$(BIN)/mypy

contracts: $(STAMP)  ## import-linter: the layers of docs/architecture.md
	$(BIN)/lint-imports

unit: $(STAMP)  ## the fast tests only
	$(BIN)/pytest -m "not slow and not services" -q

test: lint typecheck contracts  ## everything CI runs: lint, types, import contracts, all tests
	$(BIN)/pytest -q

bench: $(STAMP)  ## W1-W4 embedded (SQLite + in-process broker), printed as a table
	$(BIN)/python -m bench

bench-distributed: $(STAMP)  ## W1-W4 over the real stores and brokers, one column per pair
	$(BIN)/python -m bench distributed

bench-http: $(STAMP)  ## magic-flow server under 200 concurrent HTTP clients
	$(BIN)/python -m bench.bench_http

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
