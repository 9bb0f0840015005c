# kubelab developer targets. `make test` is the whole test ladder (what CI runs).
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin

.PHONY: venv lint typecheck unit integration e2e drills test bench clean

venv:
	@KUBELAB_EXTRAS=dev ./kubelab --bootstrap-only

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/ansible-lint

typecheck: venv
	$(BIN)/mypy

unit integration e2e: venv
	@tests/ladder.sh $@

# the fault drills alone (the e2e tier's scenario 10) on a lab of their own
drills: venv
	$(BIN)/python -m pytest -v tests/e2e/test_10_faults.py

test: lint typecheck
	@tests/ladder.sh unit integration e2e

bench: venv
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
