# `make run` and `make test` work on a fresh machine with Python 3.11 and make.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint format bench lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Installs the tested runtime versions pinned in requirements.lock, then the project itself.
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# The test tools and notebook kernel (the test extra), pinned apart from the
# runtime so that `make run` (and a user's `pip install -r requirements.lock`) never gets them.
$(TEST_STAMP): requirements-test.lock $(STAMP)
	$(BIN)/python -m pip install -q -r requirements-test.lock
	touch $@

run: $(STAMP)
	$(BIN)/market-sim run configs/quickstart.yaml --overwrite

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

format: $(TEST_STAMP)
	$(BIN)/ruff format .

# Speed figures for benchmarks/README.md (minutes; the 10k-bus validation runs take longest).
bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_quickstart.py
	$(BIN)/python benchmarks/bench_baselines.py
	$(BIN)/python benchmarks/bench_clearing.py
	$(BIN)/python benchmarks/bench_validation.py
	$(BIN)/python benchmarks/bench_engine_floor.py
	$(BIN)/python benchmarks/bench_period_parts.py
	$(BIN)/python -m pytest -q -m slow

# Re-resolve both locks from pyproject's ranges (run after changing dependencies, then test):
# the runtime closure first, then the extras constrained to it, keeping only what they add.
# Make it with the lowest Python 3.11 at hand: every pin must install on each supported Python
# (Debian 12's is 3.11.2; tests/test_packaging.py checks the pins' Requires-Python).
lock:
	rm -rf .lockenv && $(PY) -m venv .lockenv
	.lockenv/bin/python -m pip install -q --upgrade pip
	.lockenv/bin/python -m pip install -q .
	.lockenv/bin/python -m pip freeze --exclude market_sim > requirements.lock
	.lockenv/bin/python -m pip install -q ".[test]" -c requirements.lock
	{ echo "# The test extra on top of the runtime lock (make test installs it)"; \
	  echo "-r requirements.lock"; \
	  .lockenv/bin/python -m pip freeze --exclude market_sim | grep -vxFf requirements.lock; \
	} > requirements-test.lock.new && mv requirements-test.lock.new requirements-test.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
