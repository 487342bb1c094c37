# make run   - a fresh machine to a running kernel on the embedded SQLite default
# make test  - lint (with the import contracts), type checks and every test on SQLite and PostgreSQL
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Dev mode: a built-in JWT secret, so the printed token works. Never use it in production.
run: export BILLING_DEV_MODE ?= true
run: $(STAMP)
	$(BIN)/billing-kernel migrate
	$(BIN)/billing-kernel demo
	$(BIN)/billing-kernel serve --host 127.0.0.1 --port 8000

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# The billing page's browser tests drive Debian's chromium (Playwright's own download is not used).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

pytest: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest

bench: $(STAMP)
	cd bench && PYTHONPATH=.. ../$(BIN)/python run.py

clean:
	rm -rf $(VENV) billing.db billing.db-wal billing.db-shm .pytest_cache .mypy_cache .ruff_cache
