"""The end of every request: its record goes to the metrics and to the transfer log.

``start(worker)`` runs once in each worker process, before it serves;
``finished(...)`` once per exchange, from the worker (``pyai.server.connection``);
``reopen()`` on USR1.  A failure here is logged by the worker, never answered.

Both are batched: a request only adds to its thread's counts and queues its
line (about a microsecond each, no lock); ``flush()`` writes them.  ``start``
starts a thread that flushes every ``FLUSH_INTERVAL`` seconds, and at once when
a scrape in another worker asks (``metrics.wait_for_askers``), and registers
``flush`` to run at the process's exit.  A worker may call ``flush()`` itself
(its tick, and before it leaves with ``os._exit``, which runs no exit handler).
"""

import atexit
import logging
import threading
import time
from typing import TYPE_CHECKING, Optional

from pyai.ops import metrics, transfer_log
from pyai.ops.record import Record

if TYPE_CHECKING:
    from pyai.config import Config

FLUSH_INTERVAL = metrics.FLUSH_INTERVAL  # seconds a count or a line waits at most (but see metrics: scrapes)
log = logging.getLogger("gunicorn.error")  # the worker's error log
_flusher: Optional[threading.Thread] = None  # this process's flushing thread, once started


def start(worker: object, config: "Config") -> None:
    """Set up what a worker process observes with (``config``: the pyai Config)."""
    global _flusher
    metrics.start_worker(config)
    transfer_log.open_log(config)
    metrics.listen()
    if _flusher is None:
        _flusher = threading.Thread(target=_flushing, name="pyai-observe", daemon=True)
        _flusher.start()
        atexit.register(flush)  # a graceful exit, and a quick one through sys.exit


def finished(record: Record, status: Optional[int], sent: int, client: object) -> None:
    """``record`` (a Record) ended with ``status`` (int, or None if no answer began) after ``sent``
    body bytes, for ``client`` (the peer address)."""
    metrics.request_finished(record, status, sent)
    transfer_log.write(record, status, sent, client)


def flush() -> None:
    """Write what the requests counted and logged since the last flush; never raises."""
    metrics.flush()
    transfer_log.flush()


def reopen() -> None:
    """USR1: reopen the transfer log's file (after logrotate moved it); queued lines go to the old one."""
    transfer_log.reopen()


def _flushing() -> None:
    """The flushing thread: every FLUSH_INTERVAL seconds, or at once for another worker's scrape."""
    while True:
        try:
            askers = metrics.wait_for_askers(FLUSH_INTERVAL)
            flush()
            metrics.answer(askers)
        except Exception:  # noqa: BLE001 - the thread must go on, or nothing would be written again
            log.exception("observe: flushing failed")
            time.sleep(FLUSH_INTERVAL)  # not a loop of the same failure
