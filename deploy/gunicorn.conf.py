"""gunicorn settings for Keras Fleet; the same file runs `make serve` and the VM's unit.

Every value comes from the environment through api.config (one table of settings,
documented in the README). Start with:  gunicorn -c deploy/gunicorn.conf.py api.wsgi:app
"""

import os
import shutil
from pathlib import Path

from gunicorn import glogging

from api.affinity import pin_worker
from api.config import Config
from api.worker_sockets import choose_slot, remove_slots

_config = Config.from_env()

# Where gunicorn listens. A unix socket: only the local nginx talks to gunicorn,
# and a socket skips the TCP stack on every proxied request.
bind = [_config.bind]

# Worker processes. Each one loads its own copy of the model, so memory grows
# with this number; about one per core suits a CPU-bound model.
workers = _config.workers

# Threads per worker. The model call releases the GIL, so a few threads keep a
# worker busy while others parse JSON. The worker class is gunicorn's "gthread" (the
# one threads need) that also listens on a socket of its own, beside the shared one
# in `bind`: nginx lists every worker's socket and sends each request to the one
# with the fewest in flight (api/worker_sockets.py says why the kernel's choice on a
# shared socket is not good enough).
worker_class = "api.worker_sockets.SlotThreadWorker"
threads = _config.threads


def pre_fork(server, worker):
    """Give the new worker a slot (a free one), so its socket's path is one nginx lists."""
    held = [live.slot for live in server.WORKERS.values() if live.slot is not None]
    worker.slot = choose_slot(held, _config.workers)


def post_fork(server, worker):
    """In the new worker, before it starts a thread: pin it to its slot's cores (api/affinity.py)."""
    cores = pin_worker(worker.slot, _config.workers, _config.worker_cpu_affinity, os.sched_getaffinity(0),
                       _config.intra_op_threads)
    if cores is not None:
        server.log.info("worker %s (slot %s) runs on cores %s", worker.pid, worker.slot, cores)


def on_exit(server):
    """The slots' paths would lead to a closed socket now: remove them."""
    remove_slots(_config.bind, _config.workers)


# Never preload the app: TensorFlow is not fork-safe. Each worker imports the
# app after fork, loads the model, warms it up, and only then accepts requests.
preload_app = False

# Seconds a worker may stay silent (loading the model, or stuck) before the
# master replaces it. Must cover model load + warm-up.
timeout = _config.timeout

# Seconds in-flight requests get to finish after SIGTERM before workers are killed.
# nginx's proxy timeouts and the load balancer's deregistration delay are sized to it.
graceful_timeout = _config.graceful_timeout

# Recycle each worker after this many requests (plus jitter, so they don't all
# restart at once), if set: it bounds a leak's memory growth. Off by default: a fresh
# worker loads the model before it accepts a request, so recycling never answers 503,
# but the instance runs a worker short for that load (seconds; more for a big model),
# and a busy small model reached 100,000 requests per worker in under a minute.
max_requests = _config.max_requests
max_requests_jitter = _config.max_requests_jitter or _config.max_requests // 10

# Seconds to hold an idle keep-alive connection from nginx open.
keepalive = 75

# Logs go to stdout/stderr as JSON lines (the app's formatter): systemd's journal or
# the terminal collects them. nginx writes each request's line, with the app's fields
# (REQUEST_LOG, api/telemetry.py); gunicorn's own access log would be a second copy.
accesslog = None
errorlog = "-"


class _LoggerWithoutAccessLog(glogging.Logger):
    """gunicorn's logger minus the access log, which a logconfig_dict turns on: it would
    build its fields for every request only for the silenced logger below to drop them."""

    def access(self, resp, req, environ, request_time):
        return None


logger_class = _LoggerWithoutAccessLog
loglevel = _config.log_level
capture_output = True
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "api.logs.json_formatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": _config.log_level.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": _config.log_level.upper(), "propagate": False},
        # Silenced: the app's per-request line replaces it (see accesslog above).
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}

# The socket file is reachable by the local nginx only through filesystem rights.
umask = 0o007 if _config.bind.startswith("unix:") else 0

# gunicorn's control socket (a shared ~/.gunicorn/gunicorn.ctl by default) is not used:
# signals and the pid file are the operator interface, and several stacks on one
# machine (tests, a local fleet) must not fight over one path.
control_socket_disable = True

# Name the processes so `ps` shows which is which.
proc_name = "keras-fleet"


# --- Metrics across workers (prometheus-client multiprocess mode) ---------------------
# Workers write their series to files in PROMETHEUS_MULTIPROC_DIR; /metrics adds them.


def on_starting(server):
    """Start from an empty metrics directory: files of a previous run would be added in."""
    if _config.prometheus_multiproc_dir:
        directory = Path(_config.prometheus_multiproc_dir)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (in flight, queue depth); its counters stay counted."""
    if _config.prometheus_multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, _config.prometheus_multiproc_dir)
