"""The batches of pyai.ops.observe, in-process: many threads counting and logging at once lose
nothing and count nothing twice, a flush writes every line whole (no write over PIPE_BUF, none
ending inside a line), and the counts a flush writes are the requests' (the scrapes' exactness
across real workers is test_metrics.py's)."""

import json
import os
import threading
import time
from types import SimpleNamespace

import pytest

from pyai.ops import metrics, transfer_log
from pyai.ops.record import RECORD, Record

THREADS, EACH = 8, 400


def run_threads(work):
    """``work(thread index)`` on THREADS threads started together; every one of them finished."""
    start = threading.Barrier(THREADS)

    def body(index):
        start.wait()
        work(index)

    threads = [threading.Thread(target=body, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)


@pytest.fixture
def log_file(tmp_path, monkeypatch):
    """The transfer log in a file, and every write to it: (the log's path, [bytes of each write])."""
    path = tmp_path / "transfer.log"
    transfer_log.open_log(SimpleNamespace(transfer_log=str(path)))
    fd, writes, real_write = transfer_log._log.fd, [], os.write

    def recording(to, data):
        if to == fd:
            writes.append(bytes(data))
        return real_write(to, data)

    monkeypatch.setattr(os, "write", recording)
    yield path, writes
    transfer_log.open_log(SimpleNamespace(transfer_log=transfer_log.OFF))
    os.close(fd)


def test_lines_of_many_threads_are_each_written_once_and_whole(log_file):
    path, writes = log_file

    def work(index):
        for number in range(EACH):
            # every fifth one near the bounds (escaped as \uXXXX: about 2 KB), so batches must split
            record = Record("GET", "/" + ("\u00e9" * 200 if number % 5 == 0 else f"{index}-{number}"))
            record.ident = f"{index}-{number}"
            transfer_log.write(record, 200, number, ("192.0.2.1", 1000 + index))

    run_threads(work)
    transfer_log.flush()
    lines = path.read_bytes().splitlines(keepends=True)
    idents = sorted(json.loads(line)["id"] for line in lines)
    assert idents == sorted(f"{index}-{number}" for index in range(THREADS) for number in range(EACH))
    content = path.read_bytes()
    assert sum(map(len, writes)) == len(content) and all(data in content for data in writes)  # each whole
    assert all(len(data) <= transfer_log.PIPE_BUF and data.endswith(b"\n") for data in writes)
    assert len(writes) < len(lines) / 3  # batched: several lines a write
    transfer_log.flush()
    assert path.read_bytes().count(b"\n") == len(lines)  # nothing left to write twice


def test_a_line_waits_for_a_batch_or_a_flush(log_file):
    path, writes = log_file
    record = Record("HEAD", "/waiting")
    for _ in range(transfer_log.BATCH_LINES - 1):
        transfer_log.write(record, 200, 0, None)
    assert writes == []  # queued: the flush writes them (the thread of pyai.ops.observe, the exit, USR1)
    transfer_log.reopen()  # USR1: what is queued goes to the file logrotate moved, first
    assert len(writes) == 1 and writes[0].count(b"\n") == transfer_log.BATCH_LINES - 1
    for _ in range(transfer_log.BATCH_LINES):
        transfer_log.write(record, 200, 0, None)
    assert len(writes) == 2  # the request whose line made a batch wrote it
    assert path.read_bytes().count(b"\n") == 2 * transfer_log.BATCH_LINES - 1


@pytest.fixture
def counting(monkeypatch):
    """This process's instruments, counting alone (no multiprocess directory), fresh."""
    monkeypatch.delenv(metrics.DIRECTORY_ENV, raising=False)
    monkeypatch.setattr(metrics, "_instruments", None)
    monkeypatch.setattr(metrics, "_thread_counts", [])
    monkeypatch.setattr(metrics, "_local", threading.local())
    metrics.start_worker(None)
    return metrics._instruments


def samples(instruments):
    found = {}
    for family in instruments.registry.collect():
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_counts_of_many_threads_are_exact_once_flushed(counting):
    held = []  # a download of each thread still under way at the flush

    def work(index):
        for number in range(EACH):
            method = ("GET", "PUT", "BREW")[number % 3]
            record = Record(method, "/x")
            record.started = time.monotonic() - 0.003  # above the first bucket's bound
            metrics.transfer_started({RECORD: record}, method)
            metrics.request_finished(record, (200, 404, None)[number % 3], 10)
        record = Record("GET", "/held")
        metrics.transfer_started({RECORD: record}, "GET")
        held.append(record)

    run_threads(work)
    assert samples(counting)[("pyai_sent_bytes_total", ())] == 0  # nothing written before a flush
    metrics.flush()
    found = samples(counting)
    gets, puts, others = (THREADS * len(range(first, EACH, 3)) for first in range(3))
    assert found[("pyai_requests_total", (("method", "GET"), ("status", "2xx")))] == gets
    assert found[("pyai_requests_total", (("method", "PUT"), ("status", "4xx")))] == puts
    assert found[("pyai_requests_total", (("method", "other"), ("status", "none")))] == others
    assert found[("pyai_request_duration_seconds_count", (("method", "GET"),))] == gets
    assert found[("pyai_request_duration_seconds_bucket", (("le", "0.001"), ("method", "GET")))] == 0
    assert found[("pyai_request_duration_seconds_bucket", (("le", "+Inf"), ("method", "GET")))] == gets
    assert found[("pyai_request_duration_seconds_sum", (("method", "GET"),))] >= 0.003 * gets
    assert found[("pyai_sent_bytes_total", ())] == 10 * THREADS * EACH
    assert found[("pyai_transfers_in_progress", (("direction", "download"),))] == THREADS
    assert found[("pyai_transfers_in_progress", (("direction", "upload"),))] == 0

    for record in held:
        metrics.request_finished(record, 200, 0)
    metrics.flush()
    metrics.flush()  # a flush with nothing new adds nothing
    found = samples(counting)
    assert found[("pyai_transfers_in_progress", (("direction", "download"),))] == 0
    assert found[("pyai_requests_total", (("method", "GET"), ("status", "2xx")))] == gets + THREADS
    assert found[("pyai_sent_bytes_total", ())] == 10 * THREADS * EACH
