# The two commands of the README: `make run` (Keystile on SQLite) and `make test` (everything CI checks).
# Both create the project's own virtual environment in .venv first. `make run` installs only what serving needs
# (the package, editable, without extras); `make test` adds the `dev` extras (pytest, mypy, ruff, FastAPI,
# Flask…). Each install leaves its own stamp: the dev install also stands for the serving one, so `make test`
# then `make run` installs nothing more, and `make run` then `make test` still installs the dev extras.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
RUN_STAMP = $(VENV)/.installed-run
DEV_STAMP = $(VENV)/.installed-dev

.PHONY: run test lint typecheck unit bench clean promtool proxies chromium wrk

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

# The development environment under its former name, for scripts that make it directly.
$(BIN)/.installed: $(DEV_STAMP)
	touch $@

run: $(RUN_STAMP)
	$(BIN)/keystile serve

test: lint typecheck unit

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

unit: $(DEV_STAMP) promtool proxies chromium wrk
	$(BIN)/pytest

# The metrics tests run Prometheus's `promtool check metrics` (Debian package `prometheus`). Installed once, quietly,
# when missing and running as root with apt-get; otherwise those tests skip (and fail under CI=true).
promtool:
	@command -v promtool >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || { \
		echo "installing promtool (Debian package prometheus)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq prometheus >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq prometheus >/dev/null 2>&1; } || \
		echo "could not install promtool: apt-get install prometheus failed"; }

# The forward-auth tests run Debian's nginx (auth_request) and Caddy (forward_auth) in front of a real server;
# installed like promtool when missing (the packages' services are not started: the tests run their own).
proxies:
	@{ { command -v nginx || [ -x /usr/sbin/nginx ]; } && command -v caddy; } >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		! command -v apt-get >/dev/null 2>&1 || { \
		echo "installing nginx and caddy (Debian packages)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq nginx caddy >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nginx caddy >/dev/null 2>&1; } || \
		echo "could not install nginx and caddy: apt-get install failed"; }

# The browser tests of the dashboard and the portal drive Debian's Chromium through Playwright (never a browser that
# Playwright downloads); installed like promtool when missing.
chromium:
	@[ -x /usr/bin/chromium ] || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || { \
		echo "installing chromium (Debian package)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || \
		echo "could not install chromium: apt-get install chromium failed"; }

# The benchmarks' quick run in the tests (tests/bench) loads servers with wrk (Debian package wrk); installed like
# promtool when missing.
wrk:
	@command -v wrk >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || { \
		echo "installing wrk (Debian package)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq wrk >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } || \
		echo "could not install wrk: apt-get install failed"; }

bench: $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
