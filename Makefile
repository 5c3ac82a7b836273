# The two commands:
#   make run    install, migrate, load the demo data once, start web + Celery worker + beat (Ctrl-C stops all)
#   make test   install what the tests need and run the whole suite on PostgreSQL
# and `make lint`. Each installs what it needs, so they work on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# Python comes from the machine (3.11); uv must never download one.
export UV_PYTHON_DOWNLOADS := never
# uv from PATH, else the one `pip install uv` put beside $(PYTHON) (its script folder may not be on PATH).
# Recursive (=), so it is looked up again after the `uv` target has installed it.
UV = $(shell uv --version >/dev/null 2>&1 && echo uv || echo "$(PYTHON) -m uv")
MANAGE = $(UV) run --frozen python manage.py

# Debian packages: WeasyPrint renders invoice PDFs with Pango and HarfBuzz and needs a font; the browser
# tests drive Debian's Chromium.
RUN_DEBS := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core
TEST_DEBS := $(RUN_DEBS) chromium wrk
# The benchmark drives the CSR pages with wrk.
BENCH_DEBS := $(RUN_DEBS) wrk

TEST_DATABASE_URL := postgres://postgres@127.0.0.1:5432/billing_mgmt
PYTEST_ARGS ?=

# $(call debian_packages,PACKAGES): install the missing ones when root, else name them and carry on.
define debian_packages
@if ! command -v dpkg-query >/dev/null 2>&1; then \
  echo "Not a Debian system: make sure the equivalents of these are installed: $(1)"; \
else \
  missing=""; \
  for p in $(1); do \
    dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
  done; \
  if [ -z "$$missing" ]; then \
    true; \
  elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
    echo "Installing Debian packages:$$missing"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
  else \
    echo "*** Missing Debian packages:$$missing"; \
    echo "*** Install them with: sudo apt-get install$$missing"; \
    echo "*** (without them invoice PDFs cannot be rendered, and browser tests cannot run)"; \
  fi; \
fi
endef

.PHONY: help uv install system-deps test-system-deps run test lint

help:
	@echo "make run    install, migrate, load demo data, start web + Celery worker + beat on http://127.0.0.1:8000/"
	@echo "make test   run the whole suite on PostgreSQL (DATABASE_URL, default $(TEST_DATABASE_URL))"
	@echo "make lint   ruff check and ruff format --check"

uv:
	@uv --version >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || { \
	  echo "Installing uv from PyPI..."; \
	  $(PYTHON) -m pip install --quiet uv || $(PYTHON) -m pip install --quiet --user --break-system-packages uv; \
	}

install: uv
	$(UV) sync --frozen

system-deps:
	$(call debian_packages,$(RUN_DEBS))

test-system-deps:
	$(call debian_packages,$(TEST_DEBS))

run: install system-deps
	$(MANAGE) migrate --noinput
	$(MANAGE) load_demo
	$(MANAGE) devserver

test: install test-system-deps
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" $(UV) run --frozen pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

# The benchmark (docs/benchmarks.md): a synthetic base of BENCH_ACCOUNTS accounts (10,000; 100,000 for the full
# run) in its own databases (billing_bench and its clones) on the PostgreSQL server of DATABASE_URL (default as
# for `make test`; the database DATABASE_URL names is never touched), with Celery workers on the local Redis.
# It prints one table (billing with 1 and 2 workers, Formatting, usage and statement ingest over REST, the CSR
# pages at 20 clients alone and during a run, invoice rendering) and writes docs/benchmarks.json.
# More options: make bench BENCH_ARGS="--only billing,pages --reuse"; billing alone: make bench-billing.
BENCH_ACCOUNTS ?= 10000
BENCH_ARGS ?=

.PHONY: bench bench-billing bench-invoices bench-system-deps
bench-system-deps:
	$(call debian_packages,$(BENCH_DEBS))

bench: install bench-system-deps
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" $(MANAGE) bench --accounts $(BENCH_ACCOUNTS) $(BENCH_ARGS)

bench-billing: install
	DATABASE_URL="$${DATABASE_URL:-$(TEST_DATABASE_URL)}" $(MANAGE) bench_billing --accounts $(BENCH_ACCOUNTS) $(BENCH_ARGS)

# Invoice rendering alone (docs/benchmarks.md): BENCH_INVOICES one-page invoices in one process, with the
# time split into template, layout, PDF writing and XML. Needs no database.
BENCH_INVOICES ?= 200
bench-invoices: install system-deps
	$(MANAGE) bench_invoices --count $(BENCH_INVOICES) $(BENCH_ARGS)
