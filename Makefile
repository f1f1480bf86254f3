# Everything runs from a virtualenv this Makefile builds from requirements/*.txt,
# so a fresh clone needs only python3 (3.8+) with venv and pip, and network
# access to PyPI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

FUNC_VENV  ?= .venv-func
FUNC_PY    := $(FUNC_VENV)/bin/python
FUNC_STAMP := $(FUNC_VENV)/.installed
ARGS       ?=

.PHONY: test test-fast unit integration lint format charms demo bench explore functional-check functional-charms functional clean

# The zaza virtualenv (network-bound) is built in the background while the
# main one, the lint, the unit tests and the charm builds run.
test:  ## the project's test command (what CI runs); prints its wall time, step by step
	@start=$$(date +%s); times=""; mkdir -p build; \
	$(MAKE) --no-print-directory $(FUNC_STAMP) > build/functional-venv.log 2>&1 & func=$$!; \
	for step in lint unit charms functional-check integration; do \
		t=$$(date +%s); \
		if [ $$step = functional-check ] && ! wait $$func; then cat build/functional-venv.log; exit 1; fi; \
		$(MAKE) --no-print-directory $$step || exit 1; \
		times="$$times $$step $$(( $$(date +%s) - t ))s"; \
	done; \
	echo "make test: passed in $$(( $$(date +%s) - start )) s ($$times )"

test-fast:  ## the inner loop: lint and unit tests (seconds once the virtualenv exists)
	@start=$$(date +%s); $(MAKE) --no-print-directory lint unit && \
	echo "make test-fast: passed in $$(( $$(date +%s) - start )) s"

$(STAMP): requirements/unit.txt requirements/integration.txt requirements/lint.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/integration.txt -r requirements/lint.txt
	touch $(STAMP)

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Two workers (pytest-xdist), one test file each at a time: every test has its own
# OpenBao and simulated controller, so files run side by side; the longest files are
# collected first (tests/integration/conftest.py) and the slowest tests are listed.
# (--dist load, test by test, measured no faster here: 701 s against 676 s.)
integration: $(STAMP) charms
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=10 tests/integration

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

charms: $(STAMP)  ## build the test charms with charm build (skipped when sources are unchanged)
	$(PY) -m tests.support.build_charms

demo: $(STAMP) charms  ## deploy 3 units, upgrade them, print the report
	PYTHONPATH=lib $(PY) -m tests.demo

bench: $(STAMP) charms  ## Vault requests and time per hook, against OpenBao
	PYTHONPATH=lib $(PY) -m tests.bench.run

EXPLORE_MINUTES ?= 30
explore: $(STAMP) charms  ## random lifecycle schedules for EXPLORE_MINUTES (default 30); EXPLORE_SEED replays one
	EXPLORE_MINUTES=$(EXPLORE_MINUTES) PYTHONPATH=lib:. $(PY) -m tests.explore.run

$(FUNC_STAMP): requirements/functional.txt
	$(PYTHON) -m venv $(FUNC_VENV)
	$(FUNC_PY) -m pip install --quiet --upgrade pip
	$(FUNC_PY) -m pip install --quiet -r requirements/functional.txt
	touch $(FUNC_STAMP)

functional-check: $(FUNC_STAMP)  ## what can be checked of the zaza suite without a controller
	$(FUNC_PY) -m pytest -q -p no:cacheprovider tests/functional/test_offline.py

functional-charms: $(FUNC_STAMP)  ## build the charms the bundles deploy (needs the layer index: network)
	$(FUNC_PY) -m tests.functional.build

functional: $(FUNC_STAMP)  ## zaza on the current Juju controller; make functional ARGS=--smoke
	$(FUNC_VENV)/bin/functest-run-suite --keep-model --test-directory tests/functional $(ARGS)

clean:
	rm -rf $(VENV) $(FUNC_VENV) build .pytest_cache .ruff_cache
