# Wallet API. `make help` lists the targets. Needs only Python >= 3.11 and make:
# everything else goes into .venv, and a private PostgreSQL starts when none is configured.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock clients/python/pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help install run test lint format typecheck check migrate verify bench loadtest lock clean clean-data pgbouncer browser mutate
.PHONY: cluster cluster-down cluster-packages chaos docker-test

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements.lock clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --constraint requirements.lock --editable '.[dev]' --editable ./clients/python
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install the service with its development tools

run: $(STAMP) ## Serve on 127.0.0.1:$PORT (8000); embedded PostgreSQL in .data/ unless DB_HOST is set
	$(BIN)/wallet-api serve

# The suite runs in TEST_WORKERS processes at once (pytest-xdist; 0: in one), a module to a
# process, then the modules marked `serial` alone (tests/conftest.py). TEST_MARKS narrows
# both runs by marker (CI: "not own_servers and not server_agnostic"). An empty run (no test
# of its kind selected, exit status 5) is not a failure.
TEST_WORKERS ?= 3
TEST_MARKS ?=
test_marks = $(if $(TEST_MARKS), and ($(TEST_MARKS)),)

test: $(STAMP) ## Run the test suite on TEST_DATABASE_URL, or on a private embedded PostgreSQL
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial$(test_marks)" $(PYTEST_ARGS) || test $$? = 5
	$(BIN)/pytest -m "serial$(test_marks)" $(PYTEST_ARGS) || test $$? = 5

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

migrate: $(STAMP) ## Apply migrations: to DB_HOST's database, else to the one `make run` runs
	$(BIN)/wallet-api migrate

verify: $(STAMP) ## Check the ledger, on the database migrate uses (wallet-api verify: 1 mismatch, 2 not checked)
	$(BIN)/wallet-api verify

bench: $(STAMP) ## Benchmark on servers of its own (free ports); prints and saves JSON (docs/PERFORMANCE.md)
	$(BIN)/python -m bench.hot_wallet $(BENCH_ARGS)

loadtest: $(STAMP) ## Headless Locust against `make run` (its HOST and PORT), or HOST_URL
	$(BIN)/python -m load_tests.run $(LOADTEST_ARGS)

lock: $(STAMP) ## Re-resolve requirements.lock from pyproject.toml
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra cluster --universal --python-version 3.11 -o requirements.lock

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

# The tests of /docs and /redoc (tests/test_docs_pages.py) open both pages in a headless
# Chromium that can reach nothing but the service; without one they skip (CI: fail).
browser: ## Install Debian's chromium if missing, for the docs pages' test (needs root and apt)
	@if command -v chromium >/dev/null; then \
	    echo "browser: $$(command -v chromium)"; \
	else \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium && \
	    echo "browser: installed Debian's chromium: $$(command -v chromium)"; \
	fi

# A highly available deployment on this machine (docs/SCALING.md): etcd, Patroni with three
# PostgreSQL 15 nodes in synchronous replication, two instances of the service, HAProxy in
# front (:17000 by wallet id, :17500 the primary). Data and logs in .cluster/.
cluster-packages: $(STAMP) ## Install what `make cluster` needs: Debian's etcd-server and haproxy (root, apt), Patroni
	@if ! { command -v etcd && { command -v haproxy || test -x /usr/sbin/haproxy; }; } >/dev/null; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server haproxy && \
	    { for unit in etcd haproxy; do systemctl disable --now $$unit.service || \
	      { service $$unit stop; update-rc.d $$unit disable; }; done; } >/dev/null 2>&1 || true; \
	fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --constraint requirements.lock --editable '.[dev,cluster]'

cluster: $(STAMP) ## Start the local Patroni cluster, two instances and HAProxy (after `make cluster-packages`)
	$(BIN)/python -m wallet_api.devtools.cluster up

cluster-down: ## Stop everything `make cluster` (or `make chaos`) started
	@test ! -x $(BIN)/python || $(BIN)/python -m wallet_api.devtools.cluster down

chaos: $(STAMP) ## Fault suite on a fresh local cluster: every acknowledged operation kept (skips without the packages)
	$(BIN)/python -m chaos.run $(CHAOS_ARGS)

clean: ## Remove .venv and caches (keeps .data: the wallets; see clean-data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .schemathesis mutants

clean-data: ## DELETE .data: the embedded PostgreSQL's data, that is every wallet of `make run`
	@if test -f .data/postgres/postmaster.pid && kill -0 "$$(head -1 .data/postgres/postmaster.pid)" 2>/dev/null; then \
	    echo "clean-data: the embedded PostgreSQL of \`make run\` is running on .data; stop it first"; exit 1; fi
	@echo "clean-data: deleting .data/ (every wallet, ledger entry and API key of \`make run\`)"
	rm -rf .data
