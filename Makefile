# Wallet API. `make help` lists the targets. Needs only Python >= 3.11 and make:
# everything else goes into .venv, and a private PostgreSQL starts when none is configured.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help install run test lint format typecheck check migrate bench loadtest lock clean pgbouncer mutate docker-test

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --constraint requirements.lock --editable '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install the service with its development tools

run: $(STAMP) ## Serve on 127.0.0.1:$PORT (8000); embedded PostgreSQL in .data/ unless DB_HOST is set
	$(BIN)/wallet-api serve

test: $(STAMP) ## Run the test suite on TEST_DATABASE_URL, or on a private embedded PostgreSQL
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy --strict

check: lint typecheck test ## Everything CI runs

# Part one mutates the pure modules ([tool.mutmut] in pyproject.toml) against tests/unit/:
# every mutant must be killed, or explained where it is with `# pragma: no mutate`. Part two
# applies each targeted break of a database-facing promise (tests/mutation/breaks.py) to a
# copy of the repository and expects its tests to fail. About 10 minutes.
mutate: $(STAMP) ## Mutation testing: mutmut on the pure modules, then targeted breaks (MUTATE_ARGS="--only NAME")
	rm -rf mutants
	$(BIN)/mutmut run > /dev/null 2>&1 || { $(BIN)/mutmut run; exit 1; }
	@survivors="$$($(BIN)/mutmut results)"; \
	if [ -n "$$survivors" ]; then \
	    echo "$$survivors"; echo "mutmut: mutants not killed (kill them, or explain them)"; exit 1; \
	fi; \
	echo "mutmut: $$($(BIN)/mutmut results --all true | grep -c ': killed') mutants, every one killed"
	$(BIN)/python -m tests.mutation.run_breaks $(MUTATE_ARGS)

# The Docker route, built and run: the images (on a base made from Debian's packages when
# python:3.13-slim cannot be pulled), the service against PostgreSQL in containers, the
# `tests` image, the compose file. Needs a running Docker daemon; see tests/docker/run.py.
docker-test: $(STAMP) ## Build the Docker images and check them running (DOCKER_TEST_ARGS="--help")
	$(BIN)/python -m tests.docker.run $(DOCKER_TEST_ARGS)

migrate: $(STAMP) ## Apply migrations to the database DB_* names
	$(BIN)/wallet-api migrate

bench: $(STAMP) ## Hot-wallet benchmark with its baselines; prints and saves JSON (see docs/PERFORMANCE.md)
	$(BIN)/python -m bench.hot_wallet $(BENCH_ARGS)

loadtest: $(STAMP) ## Headless Locust against a running server (HOST_URL, default http://127.0.0.1:8000)
	$(BIN)/python -m load_tests.run $(LOADTEST_ARGS)

lock: $(STAMP) ## Re-resolve requirements.lock from pyproject.toml
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements.lock

# The tests start a private PgBouncer of their own (tests/test_pgbouncer.py); /usr/sbin may not
# be on a normal user's PATH. A system service the package starts is stopped and disabled:
# nothing depends on it.
pgbouncer: ## Install Debian's pgbouncer if missing (needs root and apt)
	@if command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer; then \
	    echo "pgbouncer: $$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"; \
	else \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer && \
	    { systemctl disable --now pgbouncer.service pgbouncer.socket || \
	      { service pgbouncer stop; update-rc.d pgbouncer disable; }; } >/dev/null 2>&1 || true; \
	fi

clean: ## Remove .venv, .data and caches
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache .hypothesis .schemathesis mutants
