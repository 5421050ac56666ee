# loopml — `make run` starts the platform, `make test` checks it. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (0 = none). Three on a 2-core CI machine: the
# end-to-end tests spend much of their time waiting on the servers and CLI calls they start,
# and two workers left the CPU 18-24 % idle (census runs 15 and 18: 34:58 and 38:13 of
# pytest); three left it 8 % idle and took 24:26 (run 19). tests/cpu_time.py prints each
# module's CPU at the end of a run: the figure to cut now.
# --dist loadscope hands each worker whole modules (and classes), so a module's server or
# platform fixture is built once, not once per worker that drew some of its tests; in the
# order collected (tests/conftest.py puts the slowest modules first), not xdist's own order
# (most tests first, which left the one-test end-to-end modules running alone at the end).
# The slowest tests' times are printed at the end, to see where the suite's time goes.
PYTEST_WORKERS ?= 3
PYTEST_DIST ?= --dist loadscope --no-loadscope-reorder --durations=40

.DEFAULT_GOAL := help
.PHONY: help install install-run run test test-integration lint format typecheck bench clean assets

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "loopml needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

# Extra pip flags for the dev install. .ci/run passes --no-compile: its fresh venv only runs
# the tests, whose processes read and write bytecode under .venv/pycache alone (see `test`),
# so the __pycache__ pip compiles into site-packages (about 45 s of CPU of 80) go unread.
PIP_DEV_FLAGS ?=

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(PIP_DEV_FLAGS) -e '.[dev]'
	@[ -n "$(ALLOW_CUDA_TORCH)" ] || $(PY) scripts/check_cpu_torch.py || \
		{ echo "make install: a CUDA torch or nvidia-* wheel got in (set ALLOW_CUDA_TORCH=1 on a GPU machine)"; exit 1; }
	@touch $@ $(VENV)/.run-installed

install-run: $(VENV)/.run-installed

install: $(VENV)/.dev-installed ## Create .venv and install loopml with the dev tools

run: $(VENV)/.run-installed ## Install loopml, start it and run the demo loop (embedded defaults)
	$(VENV)/bin/loopml up --demo

lint: install ## ruff lint, format check and the import contracts (layers, no cycles)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/lint-imports

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

typecheck: install ## mypy --strict over src/loopml
	$(VENV)/bin/mypy

# The tests start hundreds of Python processes (servers, CLI calls, gateway processes,
# replicas): each would compile loopml's sources again where PYTHONDONTWRITEBYTECODE is set
# (this machine sets it), so they keep their bytecode in a cache of their own in the venv.
# mypy runs beside the tests, niced (about 50 s of one core, in the CPU the tests leave
# idle), not before them; its verdict counts as much as theirs and is printed after them.
test: lint ## Lint, type-check and run every test (services are skipped if absent)
	@nice -n 10 $(VENV)/bin/mypy > $(VENV)/typecheck.log 2>&1 & typecheck=$$!; \
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache \
	OMP_WAIT_POLICY=passive $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_DIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; fi; \
	echo "== mypy (make typecheck), run beside the tests:"; \
	if wait $$typecheck; then tail -n 1 $(VENV)/typecheck.log; \
	else cat $(VENV)/typecheck.log; echo "make test: mypy found errors (above)"; rc=1; fi; \
	exit $$rc

test-integration: install ## Only the tests that use real services (PostgreSQL, S3, NATS, Redis, Kafka, Chromium, Prometheus, Ray, subprocesses)
	LOOPML_REQUIRE_SERVICES=1 $(PY) -m pytest -m "postgres or s3 or nats or redis or kafka or browser or prometheus or ray or e2e" $(PYTEST_ARGS)

bench: install ## Run the benchmarks under bench/ and print their figures
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

assets: ## Re-vendor the portal's npm packages (htmx, uPlot) from their lock file; needs Node
	sh src/loopml/portal/assets/vendor.sh

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
