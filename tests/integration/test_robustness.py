"""Connections reused after errors, pipelined requests, broken bodies, odd ids."""

import json
import os
import socket
import threading

import pytest
import requests
from server import assert_error, parse_response, raw, recv_all, wait_until


def split_responses(data, methods):
    """Parse consecutive responses (each with Content-Length, or without a body) from one stream."""
    out = []
    for method in methods:
        while True:
            head_end = data.find(b"\r\n\r\n")
            assert head_end >= 0, data[:300]
            head = data[: head_end + 4]
            data = data[head_end + 4 :]
            if int(head.split(b" ", 2)[1]) >= 200:
                break
        resp = parse_response(head)
        length = 0 if method == "HEAD" or resp.status == 204 else int(resp.headers["content-length"])
        resp.body, data = data[:length], data[length:]
        out.append(resp)
    return out, data


@pytest.mark.posix_only("uses ids that are names")
def test_pipelined_requests(server, uid):
    a, b = uid + "-a", uid + "-b"
    body_a, body_b = os.urandom(3000), os.urandom(5000)
    host = f"Host: 127.0.0.1:{server.port}"
    stream = (
        f"PUT /{a} HTTP/1.1\r\n{host}\r\nContent-Length: {len(body_a)}\r\n\r\n".encode()
        + body_a
        + f"PUT /{b} HTTP/1.1\r\n{host}\r\nContent-Length: {len(body_b)}\r\n\r\n".encode()
        + body_b
        + f"GET /{a} HTTP/1.1\r\n{host}\r\n\r\n".encode()
        + f"GET /{b} HTTP/1.1\r\n{host}\r\nConnection: close\r\n\r\n".encode()
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(stream)
        data = recv_all(sock)
    (put_a, put_b, get_a, get_b), rest = split_responses(data, ["PUT", "PUT", "GET", "GET"])
    assert put_a.status == 201 and json.loads(put_a.body)["total_bytes"] == len(body_a)
    assert put_b.status == 201 and json.loads(put_b.body)["total_bytes"] == len(body_b)
    assert get_a.status == 200 and get_a.body == body_a
    assert get_b.status == 200 and get_b.body == body_b
    assert rest == b""
    assert server.stored_path(a).read_bytes() == body_a
    assert server.stored_path(b).read_bytes() == body_b


@pytest.mark.parametrize("size", [10, 300_000])
@pytest.mark.posix_only("uses ids that are names")
def test_connection_reused_after_conflict(server, uid, size):
    """A refused body must not be read as the next request on a kept-alive connection."""
    taken, free = uid + "-taken", uid + "-free"
    assert requests.put(server.id_url(taken), data=b"first", timeout=10).status_code == 201
    # a body that looks like a request, in case the server parsed it as one
    evil = (f"PUT /{free} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nEVIL").encode()
    evil = evil + b"." * max(0, size - len(evil))
    with requests.Session() as s:
        resp = s.put(server.id_url(taken), data=evil, timeout=30)
        assert_error(resp, 409, server.prefix)
        good = os.urandom(1000)
        resp = s.put(server.id_url(free), data=good, timeout=30)
        assert resp.status_code == 201, resp.text
        assert resp.json()["total_bytes"] == 1000
        assert s.get(server.id_url(free), timeout=30).content == good
    assert server.stored_path(taken).read_bytes() == b"first"
    assert server.stored_path(free).read_bytes() == good


def test_connection_reused_after_invalid_id(server, uid):
    with requests.Session() as s:
        resp = s.put(server.url + "/.bad", data=b"x" * 100_000, timeout=30)
        assert_error(resp, 400, server.prefix)
        resp = s.put(server.id_url(uid), data=b"fine", timeout=30)
        assert resp.status_code == 201
    assert server.stored_path(uid).read_bytes() == b"fine"


def test_truncated_chunked_body(make_server, uid):
    srv = make_server("chunked-trunc")
    head = f"PUT /{uid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    body = b"400\r\n" + b"q" * 1024 + b"\r\n" + b"400\r\n" + b"q" * 100  # second chunk cut short, no 0-chunk
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        answer = recv_all(sock)
    if answer:
        assert not answer.startswith(b"HTTP/1.1 2"), answer
        assert b"total_bytes" not in answer
    assert wait_until(lambda: srv.temp_files() == [] and not srv.stored_path(uid).exists(), timeout=30)
    assert requests.head(srv.id_url(uid), timeout=10).status_code == 404
    assert requests.put(srv.id_url(uid), data=b"ok", timeout=10).status_code == 201


def test_invalid_chunked_framing_stores_nothing(server, uid):
    body = b"zz\r\nhello\r\n0\r\n\r\n"
    resp = raw("PUT", f"/{uid}", server.port, headers=["Transfer-Encoding: chunked"], body=body)
    assert not 200 <= resp.status < 300, resp
    assert b"total_bytes" not in resp.body
    assert not server.stored_path(uid).exists()


def test_empty_chunked_body(server, uid):
    resp = raw("PUT", f"/{uid}", server.port, headers=["Transfer-Encoding: chunked"], body=b"0\r\n\r\n")
    assert resp.status == 201, resp
    assert json.loads(resp.body)["total_bytes"] == 0
    assert server.stored_path(uid).read_bytes() == b""


@pytest.mark.posix_only("the posix layout <prefix>/<id>")
def test_directory_under_prefix_is_not_a_file(server, uid):
    d = server.prefix / uid
    d.mkdir()
    (d / "inner").write_bytes(b"inner")
    url = server.id_url(uid)
    head = requests.head(url, timeout=10)
    assert head.status_code == 404
    assert head.headers["X-Pacifica-Messsage"] == "File Not found"
    assert_error(requests.get(url, timeout=10), 404, server.prefix)
    assert_error(requests.delete(url, timeout=10), 404, server.prefix)
    assert_error(requests.post(url, timeout=10), 404, server.prefix)
    resp = requests.put(url, data=b"over a dir", timeout=10)
    assert not 200 <= resp.status_code < 300, resp.text
    assert "total_bytes" not in resp.json()
    assert d.is_dir() and (d / "inner").read_bytes() == b"inner"
    assert server.temp_files() == []


@pytest.mark.slow
def test_concurrent_overwrites_are_atomic(make_server, uid):
    srv = make_server("overwrite-race", PAI_ALLOW_OVERWRITE="true")
    n = 12
    bodies = [bytes([i]) * (300_000 + i) for i in range(n)]
    barrier = threading.Barrier(n)
    statuses = [None] * n

    def worker(i):
        barrier.wait()
        statuses[i] = requests.put(srv.id_url(uid), data=bodies[i], timeout=60).status_code

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * n
    stored = srv.stored_path(uid).read_bytes()
    assert stored in bodies
    assert requests.get(srv.id_url(uid), timeout=30).content == stored
    assert srv.temp_files() == []
