# Everything runs from a virtualenv this Makefile builds from requirements/*.txt,
# so a fresh clone needs only python3 (3.8+) with venv and pip.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test unit integration lint format bench clean

test: lint unit integration  ## the project's test command (what CI runs)

$(STAMP): requirements/unit.txt requirements/integration.txt requirements/lint.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/integration.txt -r requirements/lint.txt
	touch $(STAMP)

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) -m tests.bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
