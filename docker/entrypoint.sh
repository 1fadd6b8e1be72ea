#!/bin/sh
# Container entrypoint: bring the schema to head with Alembic, then exec the command
# (Gunicorn by default), so that it runs as PID 1 and receives SIGTERM directly.
#   SKIP_MIGRATIONS=1        start without migrating (e.g. when a separate job migrates)
#   MIGRATION_ATTEMPTS=15    tries before giving up, MIGRATION_RETRY_DELAY=2 seconds apart
# Compose starts this container only once PostgreSQL is healthy; the short retry loop only
# covers a database that is still starting (about 30 s at the defaults), then fails loudly.
set -eu

if [ "${SKIP_MIGRATIONS:-0}" != "1" ]; then
    attempts="${MIGRATION_ATTEMPTS:-15}"
    delay="${MIGRATION_RETRY_DELAY:-2}"
    attempt=1
    until alembic upgrade head; do
        # The settings the service does not know were named by the first attempt: not
        # again by each retry, nor by the command below (src/wallet_api/core/config.py).
        export WALLET_API_UNKNOWN_SETTINGS_REPORTED=1
        if [ "$attempt" -ge "$attempts" ]; then
            echo "entrypoint: 'alembic upgrade head' failed $attempt times; giving up" >&2
            exit 1
        fi
        echo "entrypoint: 'alembic upgrade head' failed (attempt $attempt of $attempts)," \
            "retrying in ${delay}s" >&2
        attempt=$((attempt + 1))
        sleep "$delay"
    done
    export WALLET_API_UNKNOWN_SETTINGS_REPORTED=1
fi

exec "$@"
