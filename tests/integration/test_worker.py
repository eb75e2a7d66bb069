"""pyai's gunicorn worker: a thread keeps a busy connection, but never hoards it;
requests gunicorn itself refuses still get pyai's JSON error document.

The worker serves the next request of a kept-alive connection on the thread
that answered the last one when it arrives quickly; these tests pin down that
an idle connection gives its thread back, so connections beyond the thread
count are still served.
"""

import collections
import http.client
import json
import os
import re
import socket

import pytest
from server import raw_request, wait_until

# Requests that wait for a hoarded thread would hang: a bounded wait turns that into a failure.
TIMEOUT = 15


def _get_root(conn):
    conn.request("GET", "/")
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, body
    assert resp.getheader("Connection", "").lower() != "close"


@pytest.fixture(scope="module")
def one_thread(make_server):
    return make_server("one-thread", PAI_WORKERS="1", PAI_THREADS="1")


@pytest.fixture(scope="module")
def two_threads(make_server):
    return make_server("two-threads", PAI_WORKERS="1", PAI_THREADS="2")


def test_idle_connection_gives_its_thread_back(one_thread):
    idle = http.client.HTTPConnection("127.0.0.1", one_thread.port, timeout=TIMEOUT)
    busy = http.client.HTTPConnection("127.0.0.1", one_thread.port, timeout=TIMEOUT)
    try:
        _get_root(idle)  # ...and then stays open, saying nothing
        for _ in range(20):
            _get_root(busy)
        _get_root(idle)  # still alive after waiting in the poller
    finally:
        idle.close()
        busy.close()


def test_more_kept_alive_connections_than_threads(two_threads, uid):
    conns = [http.client.HTTPConnection("127.0.0.1", two_threads.port, timeout=TIMEOUT) for _ in range(6)]
    try:
        conns[0].request("PUT", f"/{uid}", body=b"shared", headers={"Content-Length": "6"})
        resp = conns[0].getresponse()
        assert resp.status == 201, resp.read()
        resp.read()
        for _ in range(10):
            for conn in conns:
                conn.request("GET", f"/{uid}")
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, b"shared")
    finally:
        for conn in conns:
            conn.close()


def test_every_connection_is_served_when_requests_interleave(two_threads):
    """Requests sent on all connections before any answer is read: each gets its answer."""
    conns = [http.client.HTTPConnection("127.0.0.1", two_threads.port, timeout=TIMEOUT) for _ in range(5)]
    try:
        for _ in range(5):
            for conn in conns:
                conn.request("HEAD", "/")
            for conn in conns:
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
    finally:
        for conn in conns:
            conn.close()


# Requests gunicorn itself refuses before the app sees them, and the status it picks.
UNREADABLE = [
    (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # control character in the target
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),  # no such HTTP version
    (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),  # a header line without a colon
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),  # over limit_request_line
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 9000 + b"\r\n\r\n", 431),  # over limit_request_field_size
]


@pytest.mark.parametrize("request_bytes, status", UNREADABLE, ids=["control", "version", "header", "line", "field"])
def test_unreadable_requests_get_the_json_error_document(server, request_bytes, status):
    resp = raw_request(server.port, request_bytes)
    assert resp.status == status, resp
    assert resp.headers["content-type"] == "application/json"
    document = json.loads(resp.body)
    assert document["status"].startswith(str(status))
    assert set(document) == {"status", "message", "traceback", "version"}
    assert "<html>" not in resp.body.decode("latin-1")


@pytest.fixture(scope="module")
def two_workers(make_server):
    return make_server("two-workers", PAI_WORKERS="2", PAI_THREADS="4")


def test_a_burst_of_connections_is_spread_over_the_workers(two_workers):
    """Kept-alive connections stay where they were accepted: 8 opened at once must not land 8/0 or
    6/2 on two workers (one would do all their work while the other idles).  Each round's
    requests are found in the transfer log, which names the worker (pid) that answered."""
    rounds, width = 5, 8
    warm = re.compile(rf'"path":"/warm-{os.getpid()}".*?"pid":(\d+)')

    def both_listen():  # a worker loads the app for a second or more before it listens
        socks = [socket.create_connection(("127.0.0.1", two_workers.port), timeout=TIMEOUT) for _ in range(2)]
        for sock in socks:
            sock.sendall(f"GET /warm-{os.getpid()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.recv(65536)
        for sock in socks:
            sock.close()
        return len(set(warm.findall(two_workers.log()))) == 2

    assert wait_until(both_listen, timeout=30)
    for rnd in range(rounds):
        socks = [socket.create_connection(("127.0.0.1", two_workers.port), timeout=TIMEOUT) for _ in range(width)]
        try:
            for i, sock in enumerate(socks):
                sock.sendall(f"GET /balance-{os.getpid()}-{rnd}-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            for sock in socks:
                assert sock.recv(65536).startswith(b"HTTP/1.1 4")  # 404; on hpss 400 (ids are integers)
            for sock in socks:  # the server has closed them (and counts them no more) before the next round
                sock.shutdown(socket.SHUT_WR)
                assert sock.recv(65536) == b""
        finally:
            for sock in socks:
                sock.close()
    pattern = re.compile(rf'"path":"/balance-{os.getpid()}-(\d+)-\d+".*?"pid":(\d+)')

    def found():
        return pattern.findall(two_workers.log())

    assert wait_until(lambda: len(found()) == rounds * width, timeout=10), found()
    for rnd in range(rounds):
        per_worker = collections.Counter(pid for r, pid in found() if int(r) == rnd)
        assert len(per_worker) == 2 and max(per_worker.values()) <= width // 2 + 1, (rnd, per_worker)
