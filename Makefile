# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=

.PHONY: run test venv deps dev-deps migrate lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt $(VENV)/.deps
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

## run: a working bank on this machine (SQLite + filesystem broker unless configured), Ctrl-C stops it
run: $(VENV)/.deps
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py collectstatic --noinput --verbosity 0
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho -f Procfile.dev start

## test: lint, import contracts (.importlinter), type check, migrations check and the whole suite on PostgreSQL and Redis
test: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy bankcore accounts transactions integrations notifications
	DJANGO_SETTINGS_MODULE=bankcore.settings_test DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.dev-deps
	$(BIN)/mypy bankcore accounts transactions integrations notifications

migrate: $(VENV)/.deps
	$(PY) manage.py migrate --noinput

clean:
	rm -rf var/celery var/*.log .pytest_cache .ruff_cache .mypy_cache
