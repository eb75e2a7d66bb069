"""What observing one request costs, in-process: the metrics, the transfer log, both.

``pyai.ops.observe.finished`` runs once per request in a worker; these rows call
its parts in a loop on one Record (a GET of a file: its transfer gauge too) and
divide by the calls.  The batched parts pay their flushes inside the loop (one
``observe.flush()`` every ``FLUSH_EVERY`` calls, as often as the 0.25 s timer
would at about 40000 requests a second), so a row is the whole cost of a request,
not only the part on the request's thread.  The metrics count in prometheus-client's
multiprocess mode, as under gunicorn; the transfer log goes to a file on disk and
to /dev/null (the cost without the file system).  The reference row is an empty
function of the same arguments.
"""

import os
import shutil
import tempfile
import time
from types import SimpleNamespace

import pytest
from benchlib import RESULTS, SETTINGS

CALLS = 20_000 if SETTINGS.quick else 200_000
ROUNDS = 1 if SETTINGS.quick else 5
FLUSH_EVERY = 10_000  # calls between two flushes (the timer's 0.25 s at 40000 requests a second)
CLIENT = ("192.0.2.10", 53124)


@pytest.fixture(scope="module")
def observing():
    """pyai.ops in multiprocess mode in a private metrics directory, as in a worker."""
    from pyai.ops import metrics, observe, transfer_log
    from pyai.ops.record import RECORD, Record

    directory = tempfile.mkdtemp(prefix="pyai-bench-observe-")
    saved = os.environ.get(metrics.DIRECTORY_ENV)
    os.environ[metrics.DIRECTORY_ENV] = directory
    metrics._instruments = None  # made anew in multiprocess mode
    metrics.start_worker(None)
    record = Record("GET", "/1234567", None)
    record.ident, record.token, record.digest, record.medium = "1234567", "reader", "sha256:" + "ab" * 32, "disk"
    record.sent_first_byte()
    try:
        yield SimpleNamespace(
            metrics=metrics, observe=observe, transfer_log=transfer_log, record=record,
            environ={RECORD: record}, directory=directory,
        )  # fmt: skip
    finally:
        observe.flush()
        transfer_log.open_log(SimpleNamespace(transfer_log=transfer_log.OFF))
        metrics._instruments = None
        if saved is None:
            os.environ.pop(metrics.DIRECTORY_ENV, None)
        else:
            os.environ[metrics.DIRECTORY_ENV] = saved
        shutil.rmtree(directory, ignore_errors=True)


def _per_call(one, flush):
    """Microseconds of this thread's CPU per call of ``one()``, ``flush()`` every FLUSH_EVERY calls
    and once at the end (CPU time, not wall time: on a shared machine the wall clock also counts the
    time other processes had the CPU)."""
    started = time.thread_time_ns()
    for done in range(1, CALLS + 1):
        one()
        if done % FLUSH_EVERY == 0:
            flush()
    flush()
    return (time.thread_time_ns() - started) / CALLS / 1e3


def _row(benchmark, scenario, one, flush, **extra):
    def run():
        RESULTS.add(scenario, "pyai", _per_call(one, flush), "µs/req", requests=CALLS, **extra)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(RESULTS.summary(scenario, "pyai") or {})


def _log_to(o, target):
    o.transfer_log.open_log(SimpleNamespace(transfer_log=target))


def test_observe_empty_call(benchmark, observing):
    o = observing

    def nothing(record, status, sent, client):
        pass

    _row(benchmark, "observe: empty call", lambda: nothing(o.record, 200, 30, CLIENT), lambda: None)


def test_observe_metrics(benchmark, observing):
    o = observing
    _log_to(o, o.transfer_log.OFF)

    def one():
        o.metrics.transfer_started(o.environ, "GET")  # a GET of a file: its transfer gauge, up and down
        o.metrics.request_finished(o.record, 200, 30)

    _row(benchmark, "observe: metrics", one, o.metrics.flush)


@pytest.mark.parametrize("where", ["file", "/dev/null"])
def test_observe_transfer_log(benchmark, observing, where):
    o = observing
    path = os.path.join(o.directory, "transfer.log") if where == "file" else os.devnull
    _log_to(o, path)
    _row(
        benchmark, f"observe: transfer log, {where}",
        lambda: o.transfer_log.write(o.record, 200, 30, CLIENT), o.transfer_log.flush, target_path=path,
    )  # fmt: skip
    _log_to(o, o.transfer_log.OFF)


def test_observe_both(benchmark, observing):
    o = observing
    _log_to(o, os.path.join(o.directory, "both.log"))

    def one():
        o.metrics.transfer_started(o.environ, "GET")
        o.observe.finished(o.record, 200, 30, CLIENT)

    _row(benchmark, "observe: both, file", one, o.observe.flush)
    _log_to(o, o.transfer_log.OFF)
