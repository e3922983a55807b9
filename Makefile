# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/cmo
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-sqlite test-postgres lint bench install install-dev browser ops-tools

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.run-installed: requirements.txt static/vendor/dagre.min.js | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# Front-end libraries come from npm at install time and are served as our own static files (no CDN).
static/vendor/dagre.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	mkdir -p static/vendor
	cp node_modules/@dagrejs/dagre/dist/dagre.min.js $@

# axe-core (a devDependency, MPL-2.0: its licence goes next to it) checks every page in the e2e tests.
static/vendor/axe.min.js: static/vendor/dagre.min.js
	cp node_modules/axe-core/axe.min.js $@
	cp node_modules/axe-core/LICENSE static/vendor/axe-core.LICENSE.txt

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt static/vendor/dagre.min.js static/vendor/axe.min.js | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.run-installed

install: $(VENV)/.run-installed
install-dev: $(VENV)/.dev-installed

## make run: install, migrate, create the demo and admin login, serve web + worker on http://$(HOST):$(PORT)
run: install
	$(PY) manage.py cmo_serve --check-port --host $(HOST) --port $(PORT)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py cmo_demo
	$(PY) manage.py cmo_demo_schedules
	$(PY) manage.py cmo_serve --host $(HOST) --port $(PORT)

## make test: install what the tests need and run the whole suite on SQLite, then on PostgreSQL + Redis
test: install-dev browser ops-tools lint test-sqlite test-postgres

# The e2e tests drive Debian's Chromium with Playwright (never `playwright install`).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# promtool checks the alert rules and dashboard queries; systemd-analyze the unit files (deploy/).
ops-tools:
	@command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)
	@command -v systemd-analyze >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

test-sqlite: install-dev
	env -u DATABASE_URL -u REDIS_URL CMO_VAR_DIR=$(CURDIR)/var/test $(PY) -m pytest -m "not integration" -q

# The e2e tests serve their own embedded (SQLite) CMO whatever the test database: they run once, above.
test-postgres: install-dev
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) CMO_DB_POOL_SIZE=0 CMO_VAR_DIR=$(CURDIR)/var/test $(PY) -m pytest -m "not e2e" -q

bench: install-dev
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m tests.bench
