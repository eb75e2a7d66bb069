"""The end of every request: its record goes to the metrics and to the transfer log.

``start(worker)`` runs once in each worker process, before it serves;
``finished(...)`` once per exchange, from the worker (``pyai.server.connection``);
``reopen()`` on USR1.  A failure here is logged by the worker, never answered.
"""

from pyai.ops import metrics, transfer_log


def start(worker, config):
    """Set up what a worker process observes with (``config``: the pyai Config)."""
    metrics.start_worker(config)
    transfer_log.open_log(config)


def finished(record, status, sent, client):
    """``record`` (a Record) ended with ``status`` (int, or None if no answer began) after ``sent``
    body bytes, for ``client`` (the peer address)."""
    metrics.request_finished(record, status, sent)
    transfer_log.write(record, status, sent, client)


def reopen():
    """USR1: reopen the transfer log's file (after logrotate moved it)."""
    transfer_log.reopen()
