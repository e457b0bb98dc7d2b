# medssl: `make demo` runs the whole loop on bundled data; `make test` runs the test suite
# (tests/test_layout.py checks the layers and module sizes); `make lint` checks the layers alone.
# Both install what they need into .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install browser-deps postgres-deps orthanc-deps test test-fast lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install medssl with its dev extras

browser-deps:  ## Debian's chromium + chromedriver for the browser test (root only; else that test skips)
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed and not root: the browser test will be skipped"; fi; }

postgres-deps:  ## Debian's postgresql server for tests/test_review_postgres.py (root only; else those tests skip)
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "postgresql not installed and not root: the PostgreSQL tests will be skipped"; fi; }

orthanc-deps:  ## Debian's Orthanc PACS + DICOMweb plugin for tests/test_dicomweb.py, test_export_sr.py (root only; else they skip)
	@{ command -v Orthanc >/dev/null 2>&1 || test -x /usr/sbin/Orthanc; } && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null; \
	  else echo "orthanc not installed and not root: the Orthanc (DICOMweb, DICOM SR) tests will be skipped"; fi; }

test: $(STAMP) browser-deps postgres-deps orthanc-deps  ## run every test (slow ones included)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## skip tests marked slow
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)  ## check the layers: imports only point down ([tool.importlinter] in pyproject.toml)
	$(BIN)/lint-imports --no-cache

demo: $(STAMP)  ## ingest the bundled sample, pretrain briefly, score, and serve the app
	$(BIN)/medssl demo

bench: $(STAMP)  ## run every benchmark; results land in benchmarks/results/
	for b in benchmarks/bench_*.py benchmarks/label_efficiency_*.py benchmarks/anomaly_*.py benchmarks/pays_*.py benchmarks/preset_times.py; do \
	  [ -f "$$b" ] && $(BIN)/python "$$b" || true; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
