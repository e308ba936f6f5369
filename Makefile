# `make run` and `make test` work on a fresh machine with Python 3.11 and make.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Installs the tested versions pinned in requirements.lock, then the project itself.
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

run: $(STAMP)
	$(BIN)/market-sim run configs/quickstart.yaml --overwrite

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .

# Speed figures for benchmarks/README.md (minutes; the 10k-bus validation runs take longest).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_quickstart.py
	$(BIN)/python benchmarks/bench_baselines.py
	$(BIN)/python benchmarks/bench_clearing.py
	$(BIN)/python benchmarks/bench_validation.py
	$(BIN)/python -m pytest -q -m slow

# Re-resolve the lock from pyproject's ranges (run after changing dependencies, then test).
lock:
	rm -rf .lockenv && $(PY) -m venv .lockenv
	.lockenv/bin/python -m pip install -q --upgrade pip
	.lockenv/bin/python -m pip install -q ".[test]"
	.lockenv/bin/python -m pip freeze --exclude market_sim > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
