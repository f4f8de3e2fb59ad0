# Everything starts from a bare Python 3.11: `make test` and `make demo` create .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install when the dependency lists change.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: test test-latest test-floor test-fast lint format demo sandbox bench clean mutation

$(STAMP): pyproject.toml constraints.txt
	@echo ">> creating $(VENV) with $(PYTHON) and installing the provider (pinned by constraints.txt)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv
	@$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e ".[test,lint]"
	@rm -f $(VENV)/.installed-*; touch $@

# Workers for the tests that may share the machine (xdist). Run alone, one at a time: the tests
# marked `timing` (they assert when the poller looks, to tenths of a second) and the e2e tests
# (they start whole Airflow deployments and time what they kill).
TEST_WORKERS ?= 2
PYTEST := python -m pytest -q -p no:cacheprovider

## test: what CI runs: the suite on the pinned latest Airflow, then on the supported floor
test: test-latest test-floor

## test-latest: Airflow 3.3 (constraints.txt): unit, integration, every example DAG under
## `airflow dags test`, then the real-Airflow e2e tests (scheduler, triggerers, Celery, Postgres)
test-latest: $(STAMP)
	$(BIN)/$(PYTEST) -n $(TEST_WORKERS) -m "not timing" tests/unit tests/integration tests/system
	$(BIN)/$(PYTEST) -m timing tests/integration
	$(BIN)/$(PYTEST) tests/e2e

## test-floor: the oldest supported Airflow (3.1.8, with the providers and libraries of its release
## date, pinned by constraints-floor.txt) in its own .venv-floor: unit + integration tests, every
## example DAG parsed, and one run under `airflow dags test`
FLOOR_VENV  := .venv-floor
FLOOR_BIN   := $(FLOOR_VENV)/bin
FLOOR_STAMP := $(FLOOR_VENV)/.installed-$(shell cat pyproject.toml constraints-floor.txt | cksum | cut -d' ' -f1)

$(FLOOR_STAMP): pyproject.toml constraints-floor.txt
	@echo ">> creating $(FLOOR_VENV) with $(PYTHON) (Airflow floor, pinned by constraints-floor.txt)"
	@test -x $(FLOOR_BIN)/python || $(PYTHON) -m venv $(FLOOR_VENV)
	@$(FLOOR_BIN)/python -m pip install -q --disable-pip-version-check uv
	@$(FLOOR_BIN)/uv pip install -q --python $(FLOOR_BIN)/python -c constraints-floor.txt -e ".[test]"
	@rm -f $(FLOOR_VENV)/.installed-*; touch $@

test-floor: $(FLOOR_STAMP)
	$(FLOOR_BIN)/$(PYTEST) -n $(TEST_WORKERS) -m "not timing" tests/unit tests/integration
	$(FLOOR_BIN)/$(PYTEST) -m timing tests/integration
	$(FLOOR_BIN)/$(PYTEST) tests/system/test_example_dags.py -k "clean or imports_fast or parses_alone"

## lint: ruff (rules and format) and mypy --strict on the package; CI runs it before the tests
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## format: apply ruff's formatting and safe fixes
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## test-fast: unit tests only (no sockets, no metadata DB)
test-fast: $(STAMP)
	$(BIN)/$(PYTEST) tests/unit

## demo: run the daily content pipeline against the local sandbox (or a real gateway if LUMA_API_KEY is set)
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## sandbox: serve the Luma sandbox on http://127.0.0.1:8000 (API key: sandbox-key)
sandbox: $(STAMP)
	$(BIN)/python -m luma_provider.sandbox --port 8000 --api-key sandbox-key

## bench: run the benchmarks and print their tables
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(FLOOR_VENV) build *.egg-info airflow_home output

## mutation: mutation testing (mutmut 3.8) of luma_provider/api.py and models.py against the fast
## unit tests; installs mutmut on demand, works in build/mutation, prints the score. Not run by CI.
MUTMUT_DIR := build/mutation
mutation: $(STAMP)
	@$(BIN)/uv pip install -q --python $(BIN)/python 'mutmut==3.8.*'
	@rm -rf $(MUTMUT_DIR) && mkdir -p $(MUTMUT_DIR)
	@tar -cf - --exclude=__pycache__ pyproject.toml luma_provider tests | tar -xf - -C $(MUTMUT_DIR)
	@cd $(MUTMUT_DIR) && { $(CURDIR)/$(BIN)/mutmut run --max-children $$(nproc) > mutmut-run.log 2>&1 || true; } \
	  && $(CURDIR)/$(BIN)/mutmut results --all true > results.txt 2>/dev/null \
	  && awk -F': ' '{ split($$1, p, "."); f = p[2]; total[f]++; \
	      if ($$2 == "killed" || $$2 == "timeout") killed[f]++; else left[f] = left[f] "\n    " $$2 ": " $$1 } \
	    END { for (f in total) { printf "%s.py: %d mutants, %d killed (%.1f%%)%s\n", \
	      f, total[f], killed[f], 100 * killed[f] / total[f], left[f] } }' results.txt
	@echo ">> survivors: '$(CURDIR)/$(BIN)/mutmut show <name>' in $(MUTMUT_DIR); known equivalent ones are listed in README.md"
