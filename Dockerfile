# Wallet API image (Python 3.13, slim). Stages:
#   dependencies  a venv in /opt/venv with the runtime dependencies (pinned by the lock)
#   builder       dependencies + the service
#   tests         dependencies + the `dev` extra, then the service and the test suite:
#                 `docker compose run --rm tests`
#   runtime       the last stage, so the default target: builder's venv and what running needs
# The dependency layers come before any source, so that a code change reinstalls neither the
# runtime dependencies nor the development tools.
# Needs BuildKit (the default builder of current Docker) for the cache and secret mounts and
# COPY --chmod.
#
# Build arguments and secrets, none needed where Docker Hub and PyPI answer:
#   PYTHON_IMAGE  the base of every stage: the specification's python:3.13-slim by default, or
#                 any image with `python` (>= 3.11) on PATH and its venv module, for example one
#                 made from Debian's packages by docker/local-base.sh where Docker Hub does not
#                 answer (make docker-test does that).
#   secret pip_ca a CA bundle pip trusts while it downloads (docker build --secret
#                 id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt), for a network that
#                 intercepts TLS. Mounted during those RUN steps only: no layer keeps it.

ARG PYTHON_IMAGE=python:3.13-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS dependencies

ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONUNBUFFERED=1

RUN python -m venv /opt/venv
WORKDIR /build

# Runtime dependencies first, in a layer of their own: rebuilt only when pyproject.toml or the
# lock changes, not on every code or README change.
COPY pyproject.toml requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/runtime-requirements.txt \
    && pip install --constraint requirements.lock --requirement /tmp/runtime-requirements.txt

# ---------------------------------------------------------------------------------------------
FROM dependencies AS builder

# The service itself (a regular, non-editable install; the `dev` extra is not installed).
# README.md: pyproject.toml names it as the readme.
COPY README.md ./
COPY src/ src/
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && pip install --constraint requirements.lock .

# ---------------------------------------------------------------------------------------------
# The test suite, run against the compose `test_db` (TEST_DATABASE_URL). tests/ starts Gunicorn
# and Alembic itself from its parent directory, so /app holds what the repository root holds.
FROM dependencies AS tests

RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['dev']))" \
        > /tmp/dev-requirements.txt \
    && pip install --constraint requirements.lock --requirement /tmp/dev-requirements.txt

ENV PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini gunicorn.conf.py ./
COPY migrations/ migrations/
COPY src/ src/
COPY tests/ tests/
# The service, as builder installs it (its dependencies are all in place already).
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip_ca \
    if [ -f /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && pip install --no-deps .

CMD ["pytest"]

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 wallet \
    && useradd --system --uid 10001 --gid wallet --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin wallet

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY alembic.ini gunicorn.conf.py ./
# Owned by the service's user, so that `alembic revision` can write a new migration in place.
COPY --chown=wallet:wallet migrations/ migrations/
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# Numeric, so that orchestrators can verify the user is not root without /etc/passwd.
USER 10001:10001
EXPOSE 8000

# Ready means the database answers too; urlopen raises (exit 1) on a 503 or no answer.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health/ready\", timeout=4)"]

# Applies the migrations, then execs the command: Gunicorn becomes PID 1 and gets SIGTERM.
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
