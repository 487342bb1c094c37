# make run   - a fresh machine to a running kernel on the embedded SQLite default
# make test  - lint (with the import contracts), type checks and every test on SQLite and PostgreSQL
PYTHON ?= python3
PORT   ?= 8000
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The usage-tracking SDK is tested in a venv of its own: the SDK and its test tools, no server.
SDK_VENV  := .venv-sdk
SDK_STAMP := $(SDK_VENV)/.installed
# The TypeScript SDK: its npm packages (pinned by its package-lock.json) under sdk-js/.
SDK_JS_STAMP := sdk-js/node_modules/.installed
# The incumbents' JavaScript clients the compat tests drive (pinned by their package-lock.json).
COMPAT_JS_STAMP := tests/compat/js/node_modules/.installed

.PHONY: run test lint typecheck pytest sdk-test sdk-js sdk-js-types fuzz bench soak clean

$(STAMP): pyproject.toml sdk/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./sdk -e '.[dev]'
	touch $(STAMP)

$(SDK_STAMP): sdk/pyproject.toml
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SDK_VENV)/bin/python -m pip install --quiet -e './sdk[test]'
	touch $(SDK_STAMP)

$(SDK_JS_STAMP): sdk-js/package.json sdk-js/package-lock.json
	cd sdk-js && npm ci --no-audit --no-fund --loglevel=error
	touch $(SDK_JS_STAMP)

$(COMPAT_JS_STAMP): tests/compat/js/package.json tests/compat/js/package-lock.json
	cd tests/compat/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(COMPAT_JS_STAMP)

# Dev mode: a built-in JWT secret, so the printed token works. Never use it in production.
# The delivery worker runs inside the server, so alerts go out without a second command.
run: export BILLING_DEV_MODE ?= true
run: export BILLING_WORKER_IN_SERVER ?= true
run: export BILLING_ALLOW_PRIVATE_WEBHOOKS ?= true
run: $(STAMP)
	$(BIN)/billing-kernel migrate
	$(BIN)/billing-kernel demo --port $(PORT)
	$(BIN)/billing-kernel serve --host 127.0.0.1 --port $(PORT)

test: lint typecheck sdk-js pytest sdk-test

lint: $(STAMP)
	$(BIN)/ruff check src tests bench sdk
	$(BIN)/ruff format --check src tests bench sdk
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# The billing page's browser tests drive Debian's chromium (Playwright's own download is not used).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Debian's PgBouncer, which tests/store/test_pgbouncer.py starts in front of PostgreSQL.
PGBOUNCER := /usr/sbin/pgbouncer
$(PGBOUNCER):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer

# Debian's nginx, which tests/api/test_several_kernels.py puts in front of three kernels.
NGINX := /usr/sbin/nginx
$(NGINX):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light

# The suite in TEST_PROCESSES processes (pytest-xdist), handed a test file at a time in the
# order collected: the suites of servers, browsers and fuzzers first (tests/conftest.py), so
# that the processes take the longest work first and finish together, and a module's
# servers start once. Each process has databases of its own: mind PostgreSQL's
# max_connections (100 by default) before raising it.
TEST_PROCESSES ?= 2
pytest: $(STAMP) $(CHROMIUM) $(PGBOUNCER) $(NGINX) $(SDK_JS_STAMP) $(COMPAT_JS_STAMP)
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

sdk-test: $(SDK_STAMP)
	cd sdk && ../$(SDK_VENV)/bin/pytest

# The TypeScript SDK: compiled with its types checked (strict), and its unit tests with Node's own
# runner. Its tests against a live kernel run in `pytest` (tests/client/test_sdk_js.py).
sdk-js: $(SDK_JS_STAMP)
	cd sdk-js && node_modules/.bin/tsc -p . && node --test dist/test/unit/*.test.js

# The TypeScript SDK's types, generated anew from the kernel's OpenAPI document (after an API change).
sdk-js-types: $(STAMP) $(SDK_JS_STAMP)
	$(BIN)/billing-kernel openapi > sdk-js/.openapi.json
	cd sdk-js && node_modules/.bin/openapi-typescript .openapi.json -o src/openapi.ts; status=$$?; rm -f .openapi.json; exit $$status

# The schemathesis runs of `make test`, each operation with many more examples (minutes).
fuzz: $(STAMP)
	BILLING_FUZZ_EXAMPLES=$${BILLING_FUZZ_EXAMPLES:-300} $(BIN)/pytest tests/api/test_schemathesis.py

bench: $(STAMP)
	cd bench && PYTHONPATH=.. ../$(BIN)/python run.py

# Mixed traffic against two kernels and a worker for SOAK_MINUTES (20), then the books
# checked and every process's memory at the start and the end (not part of `make test`).
SOAK_MINUTES ?= 20
soak: $(STAMP)
	cd bench && PYTHONPATH=.. ../$(BIN)/python soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) $(SDK_VENV) sdk-js/node_modules sdk-js/dist tests/compat/js/node_modules billing.db billing.db-wal billing.db-shm .pytest_cache .mypy_cache .ruff_cache
