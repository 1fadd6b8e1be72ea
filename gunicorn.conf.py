"""Gunicorn configuration, from the service's settings (environment and `.env`)."""

from wallet_api.core.config import load_settings_or_exit

_settings = load_settings_or_exit()  # a bad value stops the server here, before any worker

wsgi_app = "wallet_api.main:app"
worker_class = "uvicorn_worker.UvicornWorker"  # uvloop and httptools when installed
bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.workers_count
# Uvicorn workers serve every request on one event loop; Gunicorn's `threads` does not
# apply to them. Kept so that THREADS_COUNT is validated and visible, as the spec lists it.
threads = _settings.threads_count
loglevel = _settings.log_level
# SIGTERM: stop accepting, let in-flight requests and queued batches finish, then exit.
graceful_timeout = _settings.graceful_timeout
timeout = 60
keepalive = 5
backlog = 2048
accesslog = None
proc_name = "wallet-api"
# No runtime control socket: several servers may run side by side (tests, benchmarks).
control_socket_disable = True
