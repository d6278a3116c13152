# The two commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PYTEST_ARGS ?=
# Runs a command with the embedded PostgreSQL up, unless DATABASE_URL names a database.
EMBEDDED = $(PY) -m bankcore.embedded_db run --
# The runtime role's URL when there is one (embedded: bankcore_app), else DATABASE_URL.
AS_APP = DATABASE_URL="$${DATABASE_APP_URL:-$$DATABASE_URL}"

.PHONY: run serve schema openapi test venv deps dev-deps migrate lint typecheck bench clean

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

## run: a working bank on this machine, Ctrl-C stops it. Without DATABASE_URL on an embedded
## PostgreSQL in var/postgres/ (bankcore/embedded_db.py), started here and stopped on the way out.
run: $(VENV)/.deps
	$(EMBEDDED) $(MAKE) --no-print-directory serve

# What `run` does once the database is up (embedded_db sets DATABASE_URL, the owner, and
# DATABASE_APP_URL/DATABASE_APP_ROLE, the runtime role): the owner migrates and grants the
# runtime role its rights; the demo data and web, worker and beat run as the runtime role.
serve: schema
	$(AS_APP) $(PY) manage.py seed_demo
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(AS_APP) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho -f Procfile.dev start

schema: $(VENV)/.deps
	$(PY) manage.py migrate --noinput
	@if [ -n "$$DATABASE_APP_ROLE" ] && [ -n "$$DATABASE_APP_URL" ]; then \
		$(PY) manage.py grant_app_role "$$DATABASE_APP_ROLE"; fi

## test: lint, import contracts (.importlinter), type check, migrations check and the whole suite on PostgreSQL and Redis
test: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy bankcore accounts transactions integrations notifications
	@# Reads the models only; a database that does not answer (none needed) is not worth a warning.
	DJANGO_SETTINGS_MODULE=bankcore.settings_test $(PY) -W "ignore:Got an error checking a consistent migration history:RuntimeWarning" \
		manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)

## openapi: regenerate docs/openapi.yaml, the committed API schema (a test fails when it differs from /api/schema/)
openapi: $(VENV)/.deps
	DJANGO_SETTINGS_MODULE=bankcore.settings_test $(PY) manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.dev-deps
	$(BIN)/mypy bankcore accounts transactions integrations notifications

migrate: $(VENV)/.deps
	$(EMBEDDED) $(MAKE) --no-print-directory schema

clean:
	rm -rf var/celery var/*.log .pytest_cache .ruff_cache .mypy_cache
