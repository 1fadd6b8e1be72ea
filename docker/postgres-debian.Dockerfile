# PostgreSQL from the base's own Debian packages, for `make docker-test` on a machine that cannot
# pull the official `postgres` image. A throwaway server for tests: an empty cluster made at
# build time, every client trusted, reachable only on the Docker network the test makes (never
# published). Settings: docker/postgresql.conf, mounted as the compose file mounts it.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(ls -d /usr/lib/postgresql/*/bin | tail -1)" /usr/local/lib/postgresql-bin \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql

ENV PATH=/usr/local/lib/postgresql-bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
RUN initdb --username=postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    && echo "host all all all trust" >> "$PGDATA/pg_hba.conf"

EXPOSE 5432
STOPSIGNAL SIGINT
HEALTHCHECK --interval=1s --timeout=5s --retries=60 CMD ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"]
CMD ["postgres", "-c", "config_file=/etc/postgresql/postgresql.conf"]
