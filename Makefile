# medssl: `make demo` runs the whole loop on bundled data; `make test` runs the test suite.
# Both install what they need into .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test test-fast demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install medssl with its dev extras

test: $(STAMP)  ## run every test (slow ones included)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## skip tests marked slow
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)  ## ingest the bundled sample, pretrain briefly, score, and serve the app
	$(BIN)/medssl demo

bench: $(STAMP)  ## run every benchmark; results land in benchmarks/results/
	for b in benchmarks/bench_*.py benchmarks/label_efficiency_*.py benchmarks/anomaly_*.py; do \
	  [ -f "$$b" ] && $(BIN)/python "$$b" || true; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
