"""Developer tooling: a private PostgreSQL for `make run`, the tests and the benchmark."""
