"""Chunked PUTs against the real gunicorn: the bodies stored byte for byte, their digests, keep-alive
after them, clients that pause anywhere in the framing, and the answers to bodies framed wrong or cut."""

import base64
import hashlib
import json
import os
import random
import socket
import time

import pytest
import requests
from server import parse_response, raw, recv_all, wait_until

MiB = 1024 * 1024


def encode(chunks, trailer=b"", ext=b""):
    return b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks if c) + b"0\r\n" + trailer + b"\r\n"


def head(port, uid, extra=(), close=True):
    lines = [f"PUT /{uid} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Transfer-Encoding: chunked", *extra]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock):
    """One response (after any 100) from a keep-alive connection: (status, headers, body)."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            assert more, data
            data += more
        end = data.index(b"\r\n\r\n")
        lines = data[:end].decode("latin-1").split("\r\n")
        data = data[end + 4 :]
        status = int(lines[0].split(" ")[1])
        if status != 100:
            break
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(data) < length:
        data += sock.recv(65536)
    return status, headers, data[:length], data[length:]


def stored(server, uid):
    resp = requests.get(server.id_url(uid), timeout=30)
    return resp.content if resp.status_code == 200 else None


SHAPES = {
    "empty": [],
    "one-byte-chunks": [bytes([i % 256]) for i in range(2000)],
    "curl-16k": [os.urandom(16 * 1024) for _ in range(64)] + [b"end"],
    "1m-chunks": [os.urandom(MiB) for _ in range(3)],
    "random": [os.urandom(random.Random(3).randrange(1, 200_000)) for _ in range(20)],
    "one-20m-chunk": [os.urandom(20 * MiB)],
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.quick
def test_bodies_are_stored_byte_exact(server, uid, shape):
    chunks = SHAPES[shape]
    body = b"".join(chunks)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    request = head(server.port, uid, [f"Content-Digest: sha-256=:{digest}:"]) + encode(chunks)
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(request)
        resp = parse_response(recv_all(sock))
    assert resp.status == 201, resp
    assert json.loads(resp.body)["total_bytes"] == len(body)
    assert stored(server, uid) == body
    assert server.temp_files() == []


def test_requests_generator_body(server, uid):
    parts = [os.urandom(random.Random(5).randrange(1, 70_000)) for _ in range(30)]
    resp = requests.put(server.id_url(uid), data=iter(parts), timeout=30)
    assert resp.status_code == 201, resp.text
    assert stored(server, uid) == b"".join(parts)


def test_wrong_digest_stores_nothing(server, uid):
    digest = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    resp = raw("PUT", f"/{uid}", server.port, ["Transfer-Encoding: chunked", f"Content-Digest: sha-256=:{digest}:"],
               encode([b"hello", b"world"]))  # fmt: skip
    assert resp.status == 400, resp
    assert stored(server, uid) is None


def test_extensions_and_trailers(server, uid):
    body = b'5;name=value;q="x y"\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n'
    resp = raw("PUT", f"/{uid}", server.port, ["Transfer-Encoding: chunked"], body)
    assert resp.status == 201, resp
    assert stored(server, uid) == b"hello world"


@pytest.mark.parametrize("trailer", [b"", b"X-Sum: 1\r\n"])
def test_keep_alive_after_a_chunked_body(server, uid, trailer):
    """The next request, sent in the same packet as the body's end, is answered on the same connection."""
    body = [os.urandom(3000), os.urandom(17)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        get = f"GET /{uid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        sock.sendall(head(server.port, uid, close=False) + encode(body, trailer) + get)
        status, _, doc, rest = read_response(sock)
        assert status == 201, doc
        data = rest + recv_all(sock)
    resp = parse_response(data)
    assert resp.status == 200 and resp.body == b"".join(body)


def test_two_chunked_puts_on_one_connection(server, uid):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        for i in range(2):
            sock.sendall(head(server.port, f"{uid}{i}", close=False) + encode([b"body %d" % i]))
            status, _, doc, rest = read_response(sock)
            assert status == 201 and rest == b"", doc
    assert stored(server, f"{uid}0") == b"body 0" and stored(server, f"{uid}1") == b"body 1"


@pytest.mark.parametrize(
    "first, rest",
    [
        (b"1", b"0\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n"),
        (b"10;a=", b"b\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n"),
        (b"10\r\nzzzz", b"z" * 12 + b"\r\n0\r\n\r\n"),
        (b"10\r\n" + b"z" * 16 + b"\r", b"\n0\r\n\r\n"),
        (b"10\r\n" + b"z" * 16 + b"\r\n0\r\nX-A: ", b"1\r\n\r\n"),
    ],
    ids=["size-line", "extension", "data", "crlf", "trailer"],
)
def test_a_client_pausing_anywhere(server, uid, first, rest):
    """The client stops longer than the receive's patience (it is parked), then goes on."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head(server.port, uid) + first)
        time.sleep(0.5)
        sock.sendall(rest)
        resp = parse_response(recv_all(sock))
    assert resp.status == 201, resp
    assert stored(server, uid) == b"z" * 16


@pytest.mark.parametrize(
    "body",
    [b"400\r\nhello", b"5\r\nhel", b"5\r\nhello\r\n", b"5\r\nhello\r\n0\r\n"],
    ids=["in-data", "short", "no-last", "no-end"],
)
def test_a_body_cut_short_stores_nothing(server, uid, body):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head(server.port, uid) + body)
        sock.shutdown(socket.SHUT_WR)
        resp = parse_response(recv_all(sock))
    assert resp.status == 400, resp
    assert stored(server, uid) is None
    assert wait_until(lambda: server.temp_files() == [], timeout=10)


BAD = {
    "bad-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "missing-crlf": b"5\r\nhelloXX0\r\n\r\n",
    "oversized": b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "bad-extension": b"5;\x00=\r\nhello\r\n0\r\n\r\n",
    "bad-trailer": b"5\r\nhello\r\n0\r\nnot a header\r\n\r\n",
}


@pytest.mark.parametrize("name", BAD)
def test_bad_framing_is_400_and_closes(server, uid, name):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head(server.port, uid, close=False) + BAD[name])  # keep-alive asked: still closed
        sock.shutdown(socket.SHUT_WR)
        resp = parse_response(recv_all(sock))
    assert resp.status == 400, resp
    # The same refusal on the native receive and on wsgi.input (the portable path: hpss
    # writers have no descriptor), "oversized" (a size no file can hold) included.
    assert json.loads(resp.body)["message"] == "the request body is not valid chunked encoding"
    assert stored(server, uid) is None


@pytest.fixture(scope="module")
def limited(make_server):
    return make_server("chunked-limited", PAI_MAX_BODY_SIZE="100000")


def test_over_max_body_size_is_413(limited, uid):
    resp = raw("PUT", f"/{uid}", limited.port, ["Transfer-Encoding: chunked"], encode([b"x" * 60000] * 2))
    assert resp.status == 413, resp
    assert stored(limited, uid) is None
    at_limit = raw("PUT", f"/{uid}1", limited.port, ["Transfer-Encoding: chunked"], encode([b"y" * 50000] * 2))
    assert at_limit.status == 201, at_limit
    assert stored(limited, f"{uid}1") == b"y" * 100000
