# Two entry points a new user needs (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DB ?= data/uts.duckdb
PORT ?= 8501
DEMO_CLIPS ?= 600

.PHONY: demo test install install-dev chromium bench-ingest

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# Installs, builds the demo corpus if the database has no clips yet, and serves the app (/) and the API (/api/v1)
# on loopback only; while it runs, `python -m curation ...` commands on this database go through it.
demo: $(VENV)/.installed
	$(PY) -m curation demo --db $(DB) --clips $(DEMO_CLIPS) --if-empty --tag-map
	$(PY) -m curation serve --db $(DB) --host 127.0.0.1 --port $(PORT)

# Installs test dependencies (and Debian's chromium for the browser test), checks the import contracts of
# .importlinter, and runs every test.
test: $(VENV)/.installed-dev chromium
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests

chromium:
	@scripts/ensure_chromium.sh

bench-ingest: $(VENV)/.installed
	$(PY) bench/ingest_scale.py
