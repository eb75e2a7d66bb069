"""The worker's connection accounting and its graceful stop, against the real gunicorn.

Every connection is counted once and closed once, so ``worker_connections``
is a real cap however connections ended before (closed by the client, by
``Connection: close``, by a refused request); and a worker told to stop (TERM,
or HUP, which replaces the workers) finishes the transfers in progress within
``graceful_timeout`` instead of cutting them off.  INT (Ctrl-C: to the master and its
workers at once) stops at once instead: an upload in flight is abandoned cleanly.
"""

import json
import os
import signal
import socket
import subprocess
import time

import pytest
import requests
from faults.procs import children, cpu_seconds, fd_targets, listener, open_connections
from server import parse_response, recv_all, wait_until

LIMIT = 8


def connect(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    return sock


def answered_within(sock, seconds):
    """The first bytes of an answer, or b"" when none came within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(65536)
    except socket.timeout:
        return b""


@pytest.fixture
def capped(fresh_server):
    return fresh_server.start(
        "capped", PAI_WORKERS="1", PAI_THREADS="2", GUNICORN_CMD_ARGS=f"--worker-connections {LIMIT}"
    )


def end_connections_every_way(server):
    """Connections that ended every way: a count that is off would let more in, or stop waiting for them."""
    for _ in range(30):
        assert requests.get(server.url + "/", headers={"Connection": "close"}, timeout=5).status_code == 200
    for _ in range(10):
        with connect(server) as sock:
            sock.sendall(b"NOT HTTP\r\n\r\n")
            recv_all(sock)
    for _ in range(10):
        connect(server).close()
    # and the worker has closed its end of each (uncounted it), so a test starts from none
    assert wait_until(lambda: not open_connections(server.port), timeout=10), open_connections(server.port)


def test_worker_connections_is_a_cap(capped):
    end_connections_every_way(capped)
    holders, extra = [], None
    for _ in range(LIMIT + 4):
        sock = connect(capped)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        if not answered_within(sock, 1.5):
            extra = sock
            break
        holders.append(sock)  # answered, and now idle in keep-alive
    try:
        # LIMIT kept-alive connections, one fewer if the start-up probe's is still open
        assert extra is not None and len(holders) in (LIMIT - 1, LIMIT), f"{len(holders)} connections served"
        for sock in holders:
            sock.close()
        data = answered_within(extra, 5.0)
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
    finally:
        for sock in holders + [extra]:
            if sock is not None:
                sock.close()


def start_upload(server, ident, size):
    sock = connect(server)
    sock.sendall(f"PUT /{ident} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode())
    return sock


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["HUP", "TERM"])
def test_stop_drains_an_upload_in_progress(fresh_server, uid, sig):
    srv = fresh_server.start("drain", PAI_WORKERS="1", PAI_THREADS="4", GUNICORN_CMD_ARGS="--graceful-timeout 30")
    end_connections_every_way(srv)
    (worker,) = children(srv.proc.pid)
    listening = listener(srv.port)
    assert listening in {link for _, link in fd_targets([worker])}
    data = os.urandom(4 << 20)
    sock = start_upload(srv, uid, len(data))
    try:
        sock.sendall(data[: len(data) // 2])
        assert wait_until(srv.temp_files, timeout=10), "the upload never began"
        os.kill(srv.proc.pid, sig)  # the arbiter: it tells the worker to stop
        # the worker has begun its stop (on HUP once its successor serves): it closed its listener
        assert wait_until(lambda: listening not in {link for _, link in fd_targets([worker])}, timeout=30)
        # Then longer than a worker that did not wait for us would take to go (it gives its threads 1 s):
        # only a wait shows that something does not happen.
        time.sleep(2)
        sock.sendall(data[len(data) // 2 :])
        sock.settimeout(20)
        resp = parse_response(recv_all(sock))
    finally:
        sock.close()
    assert resp.status == 201, resp
    assert srv.stored_path(uid).read_bytes() == data
    if sig == signal.SIGHUP:  # a new worker serves on
        assert requests.get(srv.id_url(uid), timeout=10).content == data


# Ctrl-C stops well within this (about 2 s); gunicorn's graceful_timeout (60 s) and then a
# SIGKILL is what a stuck worker costs.
QUICK_STOP_BOUND = 10


def test_int_abandons_an_upload_at_once(fresh_server, tmp_path, uid):
    """Ctrl-C (INT to the master and its workers at once) after some traffic, an upload in flight:
    the instance exits within QUICK_STOP_BOUND s, no worker is SIGKILLed, the upload's temporary file
    goes, the client gets an answer or a clean close (no reset), and the transfer log has its line."""
    log = tmp_path / "transfers.log"
    srv = fresh_server.start("quick", PAI_WORKERS="2", PAI_TRANSFER_LOG=str(log))
    end_connections_every_way(srv)
    for n in range(20):
        assert requests.put(srv.id_url(f"{uid}-{n}"), data=b"x" * 1000, timeout=5).status_code == 201
    sock = start_upload(srv, uid, 4 << 20)
    try:
        sock.sendall(b"y" * (1 << 20))
        assert wait_until(srv.temp_files, timeout=10), "the upload never began"
        os.killpg(srv.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        try:
            srv.proc.wait(QUICK_STOP_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"INT did not stop the instance within {QUICK_STOP_BOUND} s:\n{srv.log(3000)}")
        sock.settimeout(5)
        try:
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
        except ConnectionResetError:
            pytest.fail("the client of the upload in flight got a reset")
    finally:
        sock.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 503"), answer[:300]
    assert "SIGKILL" not in srv.log(), srv.log(3000)
    assert srv.temp_files() == []
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["path"] for line in lines].count(f"/{uid}") == 1, lines[-3:]


def test_id_with_fragment_is_refused(server, uid):
    """The id comes from the path routing and auth saw: '#' cannot smuggle in another name."""
    from server import raw

    for target in (f"/{uid}#://h/openapi.json", f"/{uid}#frag"):
        resp = raw("PUT", target, server.port, headers=["Content-Length: 3"], body=b"abc")
        assert resp.status == 400, resp
        assert resp.headers["content-type"].startswith("application/json")
    description = requests.get(server.url + "/openapi.json", timeout=5)
    assert description.status_code == 200 and description.json()["openapi"].startswith("3.")
    assert requests.head(server.id_url(uid), timeout=5).status_code == 404


TOKEN = "rw-token-for-the-continue-test-01"


def test_token_checked_before_100_continue(fresh_server, tmp_path, uid):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"rw {TOKEN}\n")
    tokens.chmod(0o600)
    srv = fresh_server.start("continue", PAI_AUTH_TOKENS_FILE=str(tokens))
    head = f"PUT /{uid} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
    with connect(srv) as sock:
        sock.sendall((head + "\r\n").encode())  # no token
        first = answered_within(sock, 5)
    assert first.startswith(b"HTTP/1.1 401"), first[:200]
    with connect(srv) as sock:
        sock.sendall((head + f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").encode())
        interim = answered_within(sock, 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
        sock.sendall(b"hello")
        sock.settimeout(10)
        resp = parse_response(recv_all(sock))
    assert resp.status == 201, resp


def test_out_of_descriptors_does_not_spin(fresh_server):
    """A worker that runs out of file descriptors stops accepting for a moment instead of
    spinning on a listener that stays readable, and serves again once descriptors free up."""
    srv = fresh_server.start("few-fds", PAI_WORKERS="1", PAI_THREADS="2")
    (worker,) = children(srv.proc.pid)
    subprocess.run(["prlimit", f"--pid={worker}", "--nofile=48:48"], check=True)
    socks = [connect(srv) for _ in range(80)]  # more than the worker can hold: the rest wait in the backlog
    try:
        assert wait_until(lambda: "cannot accept a connection" in srv.log(), timeout=10), srv.log(3000)
        before = cpu_seconds(worker)
        time.sleep(3)  # a rate: what the worker burns over a span of being out of descriptors
        assert cpu_seconds(worker) - before < 1.0, "the worker spun while out of descriptors"
    finally:
        for sock in socks:
            sock.close()
    assert requests.get(srv.url + "/", timeout=10).status_code == 200
