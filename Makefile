# The README's commands. Every target creates what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := tests/differential/node_modules/.installed-stamp
TYPECHECK := build/typecheck

.PHONY: install test lint typecheck pytest demo bench loadtest console-assets clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): tests/differential/package.json tests/differential/package-lock.json
	npm ci --prefix tests/differential --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

install: $(STAMP)

## make test: lint, strict type check of the whole package, and the whole test suite.
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable-install finder, which maps engine/
# to statefleet.engine; a tree of symlinks gives it the installed layout.
typecheck: $(STAMP)
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/statefleet
	for f in statefleet/*; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/statefleet/; done
	for d in engine actors drivers; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/statefleet/$$d; done
	cd $(TYPECHECK) && "$(CURDIR)/$(BIN)/mypy" --config-file "$(CURDIR)/pyproject.toml" --strict -p statefleet

pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest

## make demo: 1,000 hello-workflow instances on the embedded stack (Postgres, Ray, API).
demo: $(STAMP)
	$(BIN)/statefleet demo --instances 1000

## make bench: every benchmark, then issue #8's targets side by side (about 15 minutes).
bench: $(STAMP)
	$(BIN)/python -m benchmarks suite

## make loadtest: Locust against a fresh `statefleet up` (20 users, 60 s); fails on any failed request.
loadtest: $(STAMP)
	$(BIN)/python -m benchmarks.loadtest

## make console-assets: npm ci of the console's pinned packages (console/), then copy
## mermaid.min.js into statefleet/console/assets/vendor/ with its version and sha256.
## The copy is committed, so installing statefleet needs no Node.
console-assets:
	npm ci --prefix console --no-audit --no-fund --loglevel=error
	$(PYTHON) console/vendor.py

clean:
	rm -rf $(VENV) build dist tests/differential/node_modules console/node_modules
