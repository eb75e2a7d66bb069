"""Clients that go away or stall: mid-upload, mid-download, short bodies, slowloris.

None of them may leave anything under an id or a temporary file behind, take a
worker down, leak a descriptor, or keep other clients from being served; the
stalled ones are dropped after ``receive_timeout``.
"""

import os
import socket
import threading

import pytest
from server import recv_all, wait_until

from .checks import assert_absent, assert_intact, store, store_some
from .procs import WORKERS, connect, fd_count, workers
from .streams import BLOCK, abort, chunk, put_head

SENT = 16 * 1024 * 1024  # of a 64 MiB upload; more than the hpss backend gathers before writing


def send_part(sock, ident, chunked):
    sock.sendall(put_head(ident, None if chunked else 4 * SENT))
    block = os.urandom(BLOCK)
    for _ in range(SENT // BLOCK):
        sock.sendall(chunk(block) if chunked else block)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("how", ["reset", "close"])
def test_upload_cut_short(shared, new_id, chunked, how):
    """The client sends part of the body, then resets the connection or closes it (a short body)."""
    srv = shared
    before = store_some(srv, new_id)
    pids = workers(srv, WORKERS)
    ident = new_id()
    sock = connect(srv.port)
    try:
        send_part(sock, ident, chunked)
        assert wait_until(lambda: srv.temp_files() != [], timeout=60), "the upload never started"
        if how == "close":
            sock.shutdown(socket.SHUT_WR)  # the body ends here: shorter than announced
            answer = recv_all(sock)
            if answer:  # an answer is optional (the client is gone), but never a success
                assert not answer.startswith(b"HTTP/1.1 2"), answer[:300]
    finally:
        abort(sock) if how == "reset" else sock.close()
    assert wait_until(lambda: srv.temp_files() == [], timeout=60), srv.temp_files()
    assert_absent(srv, ident)
    assert_intact(srv, before)
    assert workers(srv, WORKERS) == pids, "a worker died"
    store(srv, ident, b"retried")


def test_download_cut_short(shared, new_id):
    """Clients that hang up mid-download: the worker survives, closes the file, serves the next."""
    srv = shared
    files = store_some(srv, new_id, sizes=(32 << 20, 5 << 20))
    big = next(iter(files))
    pids = workers(srv, WORKERS)
    baseline = {pid: fd_count(pid) for pid in pids}
    for round_ in range(6):
        sock = connect(srv.port)
        sock.sendall(f"GET /{big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        while got < (1 << 20) * (round_ + 1):  # read a little, differently far each time
            data = sock.recv(65536)
            assert data, "the server closed a download early"
            got += len(data)
        abort(sock) if round_ % 2 else sock.close()
    assert_intact(srv, files)
    assert workers(srv, WORKERS) == pids, "a worker died"
    # every aborted download's file and socket are closed (a little slack for gunicorn's own)
    assert wait_until(lambda: all(fd_count(pid) <= baseline[pid] + 2 for pid in pids), timeout=60), (
        baseline,
        {pid: fd_count(pid) for pid in pids},
    )


STALLED = 4  # fewer than the threads of one worker: the others must still be served


def stall_with(port, prefix_bytes):
    sock = connect(port, timeout=60)  # a bound for liveness: receive_timeout is 3 s
    sock.sendall(prefix_bytes)
    return sock


def dropped(sock):
    """What the server said before closing the stalled connection (b"" for nothing), or None
    if it still holds it open after the socket's timeout.  Closes our end once the server
    has closed its end, as a client does (gunicorn lingers until then)."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    sock.close()
    return b"".join(chunks)


@pytest.mark.posix_only("hpss bodies go through the same portable receive loop as chunked ones")
@pytest.mark.parametrize("stall", ["headers", "length-body", "chunked-body"])
def test_stalled_clients_do_not_block_others(shared, new_id, impl, stall):
    if stall != "length-body" and impl != "c":
        pytest.skip("gunicorn reads request heads and chunked bodies, the same for both I/O paths: run once")
    srv = shared
    files = store_some(srv, new_id, sizes=(10, 100_000))
    pids = workers(srv, WORKERS)
    heads = {
        "headers": lambda ident: f"PUT /{ident} HTTP/1.1\r\nHost: x\r\nContent-Le".encode(),
        "length-body": lambda ident: put_head(ident, 1 << 20) + b"x" * 1000,
        "chunked-body": lambda ident: put_head(ident) + chunk(b"x" * 1000) + b"10\r\nabc",
    }
    stalled_ids = [new_id() for _ in range(STALLED)]
    socks = [stall_with(srv.port, heads[stall](ident)) for ident in stalled_ids]
    try:
        # while they stall, other clients are served, repeatedly
        for _ in range(3):
            assert_intact(srv, files)
            store(srv, new_id(), os.urandom(50_000))
        # and each stalled connection is dropped (after receive_timeout), with a 408 when a body stalled
        results = [None] * len(socks)

        def watch(index):
            results[index] = dropped(socks[index])

        watchers = [threading.Thread(target=watch, args=(i,)) for i in range(len(socks))]
        for watcher in watchers:
            watcher.start()
        for watcher in watchers:
            watcher.join(90)
        assert all(result is not None for result in results), "a stalled connection was never dropped"
        for result in results:
            if stall != "headers" and result:
                assert result.startswith(b"HTTP/1.1 408"), result[:300]
    finally:
        for sock in socks:
            sock.close()
    assert wait_until(lambda: srv.temp_files() == [], timeout=60), srv.temp_files()
    for ident in stalled_ids:
        assert_absent(srv, ident)
    assert workers(srv, WORKERS) == pids, "a worker died"
