"""gunicorn settings for pyai (the repository's gunicorn.conf.py imports these).

Environment variables adjust the common ones without editing this file:
``PAI_BIND``, ``PAI_WORKERS``, ``PAI_THREADS``; systemd's ``RUNTIME_DIRECTORY`` places the pidfile.
"""

import os
import sys
from typing import Any, Optional

import pyai.server.balance as _balance  # noqa: F401 - the page the workers share is made here, in the master

bind = os.environ.get("PAI_BIND", "127.0.0.1:8080")

# Threaded workers keep connections alive between requests (sync workers close
# every connection) and let one worker serve many uploads and downloads at once:
# the byte moving happens in C or in the kernel with the GIL released.  pyai's
# worker is gunicorn's gthread minus the hand-off to the main thread between
# two requests on a busy connection (see pyai/server/worker.py): measured 20-30 % less
# worker CPU per small request.
worker_class = "pyai.server.worker.PyaiWorker"
workers = int(os.environ.get("PAI_WORKERS", os.cpu_count() or 2))
threads = int(os.environ.get("PAI_THREADS", "16"))

# GET of a plain file goes out with sendfile(2): pyai hands gunicorn a real fd.
# Do not write `sendfile = True` here: gunicorn reads any value of this setting
# as "disabled" (only None, the default, enables it); SENDFILE=0 in the
# environment turns it off.

keepalive = 75
# A worker that stops answering the arbiter for this long is restarted; uploads
# and downloads run in threads, so a long transfer does not hold the heartbeat.
timeout = 120
graceful_timeout = 60
# Request line and headers: generous enough for any real client, bounded for hostile ones.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# gunicorn >= 25 opens a control socket at one per-user default path; several
# archive instances on one host would fight over it, and pyai does not need it.
control_socket_disable = True

# Under systemd (RuntimeDirectory=pyai in deploy/pyai.service) the master's pid is kept in
# /run/pyai/gunicorn.pid, where log rotation finds the process to send USR1 (docs/operating.md, "Transfer log").
if os.environ.get("RUNTIME_DIRECTORY"):
    pidfile = os.path.join(os.environ["RUNTIME_DIRECTORY"].split(":")[0], "gunicorn.pid")

accesslog = os.environ.get("PAI_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("PAI_LOG_LEVEL", "info")


def on_starting(server: Any) -> None:  # gunicorn's Arbiter, as in every hook below
    """Check the configuration, listen, then make the prefix and sweep stale temporary files, before any
    worker starts."""
    from pyai.ops import metrics  # imports no prometheus_client: prepare_master sets its directory first
    from pyai.server.serve import listen_first, prepare_archive

    reason = configuration_problem()  # said first, whatever the port
    if reason is not None:
        sys.stderr.write(f"pyai: error: {reason}\n")
        sys.stderr.flush()
        os._exit(2)  # from inside gunicorn's arbiter: leave without its traceback
    listen_first(server)  # nothing is created (prefix, metrics directory) for an instance that cannot listen
    metrics.prepare_master()  # first: before anything counts, and before any worker forks
    metrics.count_reload_refused(0)  # shown as 0 from the start
    prepare_archive(server.log, server.cfg.address)


def when_ready(server: Any) -> None:
    """Bound each blocking read of a client socket by receive_timeout (see pyai.server.serve.limit_request_reads);
    drain on TERM and sweep while serving (pyai.server.lifecycle)."""
    from pyai.config import load
    from pyai.server import lifecycle
    from pyai.server.serve import limit_request_reads

    config = load(prepare=False)
    limit_request_reads(server.LISTENERS, config.receive_timeout)
    lifecycle.install(server, config)
    _check_before_reload(server)


def configuration_problem() -> Optional[str]:
    """Why this configuration cannot serve (one line: the INI file and PAI_* environment, the
    tokens file or the transfer log is bad), else None; nothing is created.  The master checks it
    before it listens, and on HUP before it touches a worker: a worker that cannot boot would stop
    the whole instance.  The same check as ``pacifica-archiveinterface check-config``."""
    from pyai.server.serve import check_config

    problems = check_config()
    return "; ".join(problems) if problems else None


def _check_before_reload(server: Any) -> None:
    """HUP: reload only a configuration that would serve; else one line, a count, and the workers
    serve on untouched (gunicorn's own reload spawns the new workers before it knows)."""
    from pyai.ops import metrics

    reload = server.handle_hup

    def handle_hup() -> None:
        reason = configuration_problem()
        if reason is None:
            reload()
            return
        server.log.error("reload refused: %s; still serving with the previous configuration", reason)
        metrics.count_reload_refused()

    server.handle_hup = handle_hup


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended (in the master): a crashed one's temporary files are swept soon, its gauges go."""
    from pyai.ops import metrics
    from pyai.server import balance, lifecycle

    lifecycle.worker_exited(server)
    metrics.worker_exited(worker.pid)  # in the master: a dead worker's in-progress gauges go
    balance.release(worker.age)  # its connections are no longer compared


def on_exit(server: Any) -> None:
    """The master ends: the metrics directory it made goes."""
    from pyai.ops import metrics

    metrics.master_exiting()
