"""Slow clients hold no thread: with 4 threads, slow clients of every kind leave others served.

Each kind of slow client would once hold a pool thread for as long as it
liked: a GET of a large file it never reads, a request head or an upload body
trickled one byte every few seconds, a ``Connection: close`` client that never
closes.  The server here has one worker with four threads; four (or more)
clients of a kind, and then all kinds at once, must leave a probe ``GET /``
answered within 3 s.  The deadlines that end such clients are checked too.
"""

import contextlib
import os
import socket
import threading
import time

import pytest
import requests
from faults.procs import client_end, server_closed, server_end
from server import wait_until

PROBE_WITHIN = 3.0
BIG = 64 * 1024 * 1024  # far more than the socket buffers of a client that reads nothing


@pytest.fixture(scope="module")
def four_threads(make_server):
    return make_server("four-threads", PAI_WORKERS="1", PAI_THREADS="4")


@pytest.fixture(scope="module")
def big_file(four_threads):
    ident = f"big-{os.getpid()}"
    assert (
        requests.put(four_threads.id_url(ident), data=os.urandom(1 << 20) * (BIG >> 20), timeout=60).status_code == 201
    )
    return ident


def probe(server):
    """GET / on a new connection; the seconds it took (fails if not answered in time)."""
    start = time.monotonic()
    resp = requests.get(server.url + "/", timeout=PROBE_WITHIN)
    assert resp.status_code == 200
    return time.monotonic() - start


def connect(server, small_buffer=False):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    return sock


class Trickler(threading.Thread):
    """Sends ``data`` one byte every ``every`` seconds until stopped (or the server closes)."""

    def __init__(self, sock, data, every=3.0):
        super().__init__(daemon=True)
        self.sock, self.data, self.every = sock, data, every
        self.stopped = threading.Event()

    def run(self):
        for i in range(len(self.data)):
            try:
                self.sock.send(self.data[i : i + 1])
            except OSError:
                return
            if self.stopped.wait(self.every):
                return

    def stop(self):
        self.stopped.set()
        self.join(5)
        self.sock.close()


def non_reading_gets(server, ident, n=4):
    socks = []
    for _ in range(n):
        sock = connect(server, small_buffer=True)
        sock.sendall(f"GET /{ident} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(sock)
    return socks


def trickled_heads(server, n=4):
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n"
    return [Trickler(connect(server), head) for _ in range(n)]


def trickled_bodies(server, n=4, ident_prefix="slow", method="PUT", extra_header="", filler=b"b"):
    """``n`` requests whose head comes at once and whose 100-byte body is trickled."""
    tricklers = []
    for i in range(n):
        sock = connect(server)
        target = f"/{ident_prefix}-{os.getpid()}-{i}-{time.time_ns()}"
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra_header}Content-Length: 100\r\n\r\n".encode())
        tricklers.append(Trickler(sock, filler * 100))
    return tricklers


def trickled_patch_bodies(server, n=4):
    return trickled_bodies(server, n, "patch", "PATCH", "Content-Type: application/json\r\n", b" ")


# Requests whose small body the app reads whole (PATCH's JSON, PROPFIND's XML, the Tape
# API's JSON), sent chunked or with a length above what the poller reads with the head.
SMALL_BODY_KINDS = {
    "patch-chunked": ("PATCH", "/patch-{n}", "Transfer-Encoding: chunked\r\n"),
    "propfind-id-chunked": ("PROPFIND", "/dav-{n}", "Depth: 0\r\nTransfer-Encoding: chunked\r\n"),
    "propfind-root-chunked": ("PROPFIND", "/", "Depth: 0\r\nTransfer-Encoding: chunked\r\n"),
    "tape-stage-chunked": ("POST", "/api/v1/stage", "Transfer-Encoding: chunked\r\n"),
    "tape-stage-long": ("POST", "/api/v1/stage", "Content-Length: 100000\r\n"),
    "tape-archiveinfo-chunked": ("POST", "/api/v1/archiveinfo", "Transfer-Encoding: chunked\r\n"),
}


def trickled_small_bodies(server, kind, n=4, every=3.0):
    """``n`` requests of ``kind`` whose head comes at once and whose body is trickled."""
    method, target, fields = SMALL_BODY_KINDS[kind]
    tricklers = []
    for i in range(n):
        sock = connect(server)
        sock.sendall(f"{method} {target.format(n=f'{os.getpid()}-{i}')} HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode())
        body = b"64\r\n" + b" " * 100 if "chunked" in fields else b" " * 100
        tricklers.append(Trickler(sock, body, every))
    return tricklers


def closing_clients(server, n=4):
    socks = []
    for _ in range(n):
        sock = connect(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        socks.append(sock)  # never read, never closed
    return socks


@contextlib.contextmanager
def trickling(tricklers):
    for t in tricklers:
        t.start()
    try:
        yield
    finally:
        for t in tricklers:
            t.stop()


def probes_answered_while(server, seconds=7.0):
    """Probe repeatedly for ``seconds``: every probe must be answered in time."""
    deadline = time.monotonic() + seconds
    times = []
    while time.monotonic() < deadline:
        times.append(probe(server))
        time.sleep(0.5)
    return times


def stuck(socks):
    """Whether the answer on each socket fills its buffers: bytes the client has not read, and
    more the server holds that it cannot send."""
    for sock in socks:
        end = server_end(sock)
        if end is None or not end.tx_queue or not client_end(sock).rx_queue:
            return False
    return True


def test_gets_that_never_read(four_threads, big_file):
    socks = non_reading_gets(four_threads, big_file)
    try:
        assert wait_until(lambda: stuck(socks), timeout=10)
        assert probes_answered_while(four_threads)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.quick
def test_trickled_heads(four_threads):
    with trickling(trickled_heads(four_threads)):
        assert probes_answered_while(four_threads)


def test_trickled_bodies(four_threads):
    with trickling(trickled_bodies(four_threads)):
        assert probes_answered_while(four_threads)


def test_trickled_small_bodies(four_threads):
    """A PATCH body is read by the poller with its head, not by the thread that answers."""
    with trickling(trickled_patch_bodies(four_threads)):
        assert probes_answered_while(four_threads)


@pytest.mark.parametrize("kind", sorted(SMALL_BODY_KINDS))
def test_trickled_small_bodies_read_by_the_app(four_threads, kind):
    """Chunked, or longer than the poller reads with the head: the app reads these
    bodies, and a client that trickles one still holds no thread while it waits."""
    with trickling(trickled_small_bodies(four_threads, kind)):
        assert probes_answered_while(four_threads)


def test_closing_clients_that_never_close(four_threads):
    """New ones keep coming (each would hold a thread for the closing handshake)."""
    socks = []
    stop = threading.Event()

    def keep_coming():
        while not stop.is_set():
            try:
                socks.extend(closing_clients(four_threads, 4))
            except OSError:
                pass
            stop.wait(0.2)

    opener = threading.Thread(target=keep_coming, daemon=True)
    opener.start()
    try:
        assert wait_until(lambda: len(socks) >= 8, timeout=10)  # some are waiting already
        assert probes_answered_while(four_threads)
    finally:
        stop.set()
        opener.join(5)
        for sock in socks:
            sock.close()


def test_every_kind_at_once(four_threads, big_file):
    socks = non_reading_gets(four_threads, big_file) + closing_clients(four_threads)
    tricklers = (
        trickled_heads(four_threads)
        + trickled_bodies(four_threads, ident_prefix="all")
        + trickled_patch_bodies(four_threads)
    )
    try:
        with trickling(tricklers):
            assert wait_until(lambda: stuck(socks[:4]), timeout=10)  # the GETs that never read
            assert probes_answered_while(four_threads)
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture(scope="module")
def short_deadlines(make_server):
    return make_server(
        "short-deadlines",
        PAI_WORKERS="1",
        PAI_THREADS="2",
        PAI_HEAD_TIMEOUT="2",
        PAI_SEND_TIMEOUT="2",
        PAI_RECEIVE_TIMEOUT="2",
        PAI_MIN_BODY_RATE="1000",
    )


def read_until_closed(sock, limit=30.0):
    """Everything the server sends until it closes the connection; (bytes, seconds taken)."""
    start = time.monotonic()
    chunks = []
    sock.settimeout(limit)
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks), time.monotonic() - start


def trickled_until_closed(trickler, limit):
    """Run ``trickler`` until the server closes its connection: (what the server sent, seconds it took)."""
    trickler.start()
    try:
        return read_until_closed(trickler.sock, limit=limit)
    finally:
        trickler.stop()


def test_head_deadline_is_total(short_deadlines):
    """A head trickled faster than any per-read timeout still ends at head_timeout: 408, closed."""
    trickler = Trickler(connect(short_deadlines), b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100, every=0.2)
    data, took = trickled_until_closed(trickler, limit=15)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b'"408 Request Timeout"' in data
    assert took < 10


def test_send_deadline(short_deadlines, uid):
    """A GET whose client takes nothing is dropped after send_timeout."""
    size = 32 * 1024 * 1024
    assert requests.put(short_deadlines.id_url(uid), data=b"z" * size, timeout=60).status_code == 201
    sock = connect(short_deadlines, small_buffer=True)
    try:
        sock.sendall(f"GET /{uid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # the client reads nothing until the server has let go of the connection
        assert wait_until(lambda: server_closed(sock), timeout=15), server_end(sock)
        data, _ = read_until_closed(sock, limit=15)
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert len(data) < size  # the connection was closed before the answer was complete


def test_body_rate_deadline(short_deadlines, uid):
    """An upload trickled faster than receive_timeout but slower than min_body_rate: 408, nothing stored."""
    sock = connect(short_deadlines)
    sock.sendall(f"PUT /{uid} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode())
    data, took = trickled_until_closed(Trickler(sock, b"r" * 1000, every=0.5), limit=20)
    assert data.startswith(b"HTTP/1.1 408"), data[:300]
    assert took < 12
    assert requests.head(short_deadlines.id_url(uid), timeout=5).status_code == 404
    assert not short_deadlines.temp_files()


@pytest.mark.parametrize("kind", sorted(SMALL_BODY_KINDS))
def test_small_body_rate_deadline(short_deadlines, kind):
    """min_body_rate holds for every body the app reads, not only uploads: 408, then closed."""
    (trickler,) = trickled_small_bodies(short_deadlines, kind, n=1, every=0.5)
    data, took = trickled_until_closed(trickler, limit=20)
    assert data.startswith(b"HTTP/1.1 408"), data[:300]
    assert b"application/" in data and b"json" in data  # a JSON document (a problem, on the Tape API)
    assert took < 12
