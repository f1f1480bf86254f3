# Everything runs from a virtualenv this Makefile builds from requirements/*.txt,
# so a fresh clone needs only python3 (3.8+) with venv and pip, and network
# access to PyPI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test unit integration lint format charms demo bench functional clean

test: lint unit integration  ## the project's test command (what CI runs)

$(STAMP): requirements/unit.txt requirements/integration.txt requirements/lint.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/integration.txt -r requirements/lint.txt
	touch $(STAMP)

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP) charms
	$(PY) -m pytest -q tests/integration

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

charms: $(STAMP)  ## build the test charms with charm build (skipped when sources are unchanged)
	$(PY) -m tests.support.build_charms

demo: $(STAMP) charms  ## deploy 3 units, upgrade them, print the report
	$(PY) -m tests.demo

bench: $(STAMP) charms  ## Vault requests and time per hook, against OpenBao
	$(PY) -m tests.bench.run

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
