# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-deps lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/staffvoice demo

# axe-core for the browser tests, from the npm registry (Chromium itself: apt-get install chromium).
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --silent
	touch $@

# What `make test` needs installed (CI makes it first, then runs the SQLite and the PostgreSQL
# suite at once: .ci/run).
test-deps: $(STAMP) $(AXE)

test: $(STAMP) $(AXE)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# ruff everywhere; mypy --strict on the core and storage (plain, typed Python: no Any leaking
# out of an untyped library, no bare generics), the default mode on adapters and the
# application layer (they meet the platform SDKs' loosely typed surfaces).
lint: $(STAMP)
	$(BIN)/ruff check bot adapters storage staffvoice tests bench
	$(BIN)/mypy --strict bot storage
	$(BIN)/mypy adapters staffvoice

clean:
	rm -rf $(VENV) staffvoice.db staffvoice.db-wal staffvoice.db-shm
