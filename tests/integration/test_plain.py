"""Plain GETs and HEADs (``pyai.serving``'s plain requests) are answered without an environ: the
same bytes as through the WSGI app, and never past what only the gate may decide.

Two servers share one prefix: one as configured by default, one with gunicorn's access log on,
which formats its lines from the environ and so has every request go through the WSGI app.
Only the Date field may differ between their answers.
"""

import json
import os
import re
import secrets
import socket

import gunicorn.glogging
import pytest
import requests
from server import parse_response, recv_all, wait_until

SMALL = b"a small file\n"
LARGE = os.urandom(64 * 1024)  # past what a GET sends from memory: its head, then sendfile


# transfer log fields that differ between two requests whatever path they take
VARYING = {"time", "duration", "ttfb", "client", "pid"}


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("plain-logs")


@pytest.fixture(scope="module")
def pair(make_server, logs):
    plain = make_server("plain", PAI_TRANSFER_LOG=str(logs / "plain.log"))
    full = make_server(
        "full",
        PAI_PREFIX=str(plain.prefix),
        PAI_ACCESS_LOG=str(logs / "access.log"),
        PAI_TRANSFER_LOG=str(logs / "full.log"),
    )
    return plain, full


def fresh_id():
    """An id valid on every backend (integers are safe names too)."""
    return str(secrets.randbits(40) | (1 << 40))


def exchange(port, request):
    """The raw bytes answered to ``request`` (which says Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        return recv_all(sock)


def undated(data):
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", data)


def request(method, target, *fields):
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *fields, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_plain_requests_take_the_plain_path_with_the_c_build(pair, impl):
    """Else the comparisons here would compare the full path with itself.  A gunicorn that cannot
    say whether its access log is on (before 27: ``make test-floors``) keeps every request on the
    full path, since its access log may need the environ."""
    plain, full = pair
    parsed = "plain GETs and HEADs are parsed by picohttpparser"
    says_access_log = hasattr(gunicorn.glogging.Logger, "access_log_enabled")
    assert (parsed in plain.log()) == (impl == "c" and says_access_log)
    assert parsed not in full.log()  # the access log needs every request's environ


@pytest.mark.quick
def test_the_same_bytes_as_through_the_app(pair):
    plain, full = pair
    small, large = fresh_id(), fresh_id()
    assert requests.put(plain.id_url(small), data=SMALL, timeout=30).status_code == 201
    assert requests.put(plain.id_url(large), data=LARGE, timeout=30).status_code == 201
    fields = ("User-Agent: curl/8.0", "Accept: */*", "Accept-Encoding: gzip", "Content-Type: text/html")
    for method in ("GET", "HEAD"):
        for target in (f"/{small}", f"/{large}", "/no-such-file-here", "/", "/openapi.json"):
            ask = request(method, target, *fields)
            answered = exchange(plain.port, ask)
            assert undated(answered) == undated(exchange(full.port, ask)), (method, target, answered[:400])
    answer = parse_response(exchange(plain.port, request("GET", f"/{small}")))
    assert answer.status == 200 and answer.body == SMALL
    assert answer.headers["content-length"] == str(len(SMALL)) and answer.headers["repr-digest"].startswith("sha-256=:")
    answer = parse_response(exchange(plain.port, request("HEAD", f"/{small}")), head=True)
    assert answer.status == 204 and answer.headers["x-content-length"] == str(len(SMALL))


def test_kept_alive_and_pipelined(pair):
    plain, _ = pair
    ident = fresh_id()
    assert requests.put(plain.id_url(ident), data=SMALL, timeout=30).status_code == 201
    one = f"GET /{ident} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", plain.port), timeout=15) as sock:
        sock.sendall(one + f"HEAD /{ident} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + one)
        data = b""
        while data.count(SMALL) < 2:
            piece = sock.recv(65536)
            assert piece, data
            data += piece
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 2 and data.count(b"HTTP/1.1 204 ") == 1
    assert data.count(b"Connection: keep-alive\r\n") == 3


def reads_of(path, ident):
    """The transfer log's lines of the GETs and HEADs of ``ident`` in the file ``path``."""
    found = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in found if line["id"] == ident and line["method"] != "PUT"]


def test_the_transfer_log_says_the_same(pair, logs):
    plain, full = pair
    ident = fresh_id()
    assert requests.put(plain.id_url(ident), data=SMALL, timeout=30).status_code == 201
    lines = []
    for srv, name in ((plain, "plain.log"), (full, "full.log")):
        for method in ("GET", "HEAD"):
            assert requests.request(method, srv.id_url(ident), timeout=30).status_code in (200, 204)

        path = logs / name
        assert wait_until(lambda: len(reads_of(path, ident)) == 2, timeout=10), reads_of(path, ident)  # noqa: B023
        # each worker writes its own lines: the order of two requests is not the log's
        kept = ({k: v for k, v in line.items() if k not in VARYING} for line in reads_of(path, ident))
        lines.append(sorted(kept, key=str))
    assert lines[0] == lines[1]
    (get,) = [line for line in lines[0] if line["method"] == "GET"]
    assert (get["status"], get["bytes_sent"], get["medium"]) == (200, len(SMALL), "disk")
    assert get["digest"].startswith("sha256:")


def test_a_client_that_reads_slowly_gets_every_plain_answer_whole(pair, logs):
    """Pipelined GETs of a file sent from memory, to a client that reads nothing until it has
    sent them all: the socket soon takes less than a whole answer, and the rest waits in the
    poller (an exchange) while the worker goes on; every answer arrives whole and in order,
    and each has its transfer log line."""
    plain, _ = pair
    ident, count = fresh_id(), 400
    body = os.urandom(16 * 1024)  # the largest file a GET sends from memory (INLINE_MAX)
    assert requests.put(plain.id_url(ident), data=body, timeout=30).status_code == 201
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", plain.port))
        sock.sendall(f"GET /{ident} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * count)
        data = bytearray()
        while data.count(body) < count:
            piece = sock.recv(1 << 20)
            assert piece, f"closed after {data.count(body)} answers"
            data += piece
    answers = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(answers) == count
    assert all(answer.endswith(b"\r\n\r\n" + body) for answer in answers)
    path = logs / "plain.log"
    assert wait_until(lambda: len(reads_of(path, ident)) == count, timeout=10), len(reads_of(path, ident))
    assert {(line["status"], line["bytes_sent"]) for line in reads_of(path, ident)} == {(200, len(body))}
