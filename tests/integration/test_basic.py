"""The compatible endpoints end to end: PUT, HEAD, POST, GET, DELETE, errors."""

import json
import os
import socket
import stat
import time

import pytest
import requests
from server import assert_error, assert_head_not_found, parse_response, raw, recv_all


def put(srv, ident, data, **kw):
    return requests.put(srv.id_url(ident), data=data, timeout=30, **kw)


def test_root_is_up(server):
    resp = requests.get(server.url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"message": "Pacifica Archive Interface Up and Running"}


@pytest.mark.quick
def test_put_returns_201_and_stores_exact_bytes(server, uid):
    data = bytes(range(256)) * 40 + b"tail"
    resp = put(server, uid, data)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["message"] == "File added to archive"
    assert type(body["total_bytes"]) is int and body["total_bytes"] == len(data)
    path = server.stored_path(uid)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


@pytest.mark.posix_only("posix reports one level: (0,)")
def test_put_empty_body(server, uid):
    resp = put(server, uid, b"")
    assert resp.status_code == 201, resp.text
    assert resp.json()["total_bytes"] == 0
    assert server.stored_path(uid).read_bytes() == b""
    head = requests.head(server.id_url(uid), timeout=10)
    assert head.status_code == 204
    assert head.headers["X-Content-Length"] == "0"
    assert head.headers["X-Pacifica-Bytes-Per-Level"] == "(0,)"
    got = requests.get(server.id_url(uid), timeout=10)
    assert got.status_code == 200 and got.content == b""


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/octet-stream",
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/mixed; boundary=xyz",  # (a form, multipart/form-data, is 415: test_multipart.py)
        "text/plain; charset=utf-8",
    ],
)
def test_put_any_content_type_stores_raw_body(server, uid, content_type):
    # bodies a form parser or JSON decoder would mangle or swallow
    data = b"a=b&c=d&--xyz\r\nContent-Disposition: form-data\r\n\r\n{not json\x00\xff"
    headers = {"Content-Type": content_type} if content_type else {}
    resp = put(server, uid, data, headers=headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["total_bytes"] == len(data)
    assert server.stored_path(uid).read_bytes() == data


def test_put_chunked_generator(server, uid):
    parts = [os.urandom(1000 + i * 37) for i in range(50)]

    def gen():
        yield from parts

    resp = put(server, uid, gen())
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status_code == 201, resp.text
    data = b"".join(parts)
    assert resp.json()["total_bytes"] == len(data)
    assert server.stored_path(uid).read_bytes() == data


def test_put_larger_file(server, uid):
    data = os.urandom(5 * 1024 * 1024 + 3)
    resp = put(server, uid, data)
    assert resp.status_code == 201, resp.text
    assert resp.json()["total_bytes"] == len(data)
    got = requests.get(server.id_url(uid), timeout=30)
    assert got.status_code == 200
    assert got.content == data


def test_put_expect_100_continue(server, uid):
    data = os.urandom(50000)
    head = (
        f"PUT /{uid} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n"
        f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head)
        sock.settimeout(5)
        try:
            first = sock.recv(65536)
        except socket.timeout:
            first = b""
        sock.settimeout(15)
        sock.sendall(data)
        rest = recv_all(sock)
    resp = parse_response(first + rest)
    assert first.startswith(b"HTTP/1.1 100"), first[:100]
    assert 100 in resp.interim
    assert resp.status == 201, resp
    assert json.loads(resp.body)["total_bytes"] == len(data)
    assert server.stored_path(uid).read_bytes() == data


@pytest.mark.posix_only("HPSS times are whole seconds")
def test_head_present(server, uid):
    data = b"x" * 1234
    assert put(server, uid, data).status_code == 201
    resp = requests.head(server.id_url(uid), timeout=10)
    assert resp.status_code == 204
    assert resp.content == b""
    h = resp.headers
    path = server.stored_path(uid)
    st = path.stat()
    assert h["X-Pacifica-Messsage"] == "File was found"
    assert h["X-Pacifica-File"] == str(path)
    assert h["X-Content-Length"] == "1234"
    assert abs(float(h["Last-Modified"]) - st.st_mtime) < 1e-3
    assert abs(float(h["X-Pacifica-Ctime"]) - st.st_ctime) < 1e-3
    assert h["X-Pacifica-Bytes-Per-Level"] == "(1234,)"
    assert h["X-Pacifica-File-Storage-Media"] == "disk"
    assert h["Content-Type"].startswith("application/json")


def test_head_missing(server, uid):
    resp = requests.head(server.id_url(uid), timeout=10)
    assert resp.status_code == 404
    assert_head_not_found(resp.headers.get)
    assert not server.stored_path(uid).exists()


def test_post_stages(server, uid):
    assert put(server, uid, b"hello").status_code == 201
    resp = requests.post(server.id_url(uid), timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"message": "File was staged", "file": uid}
    resp = requests.post(server.id_url(uid), data=b"some body", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"message": "File was staged", "file": uid}


def test_post_without_content_length(server, uid):
    assert put(server, uid, b"hello").status_code == 201
    resp = raw("POST", f"/{uid}", server.port)
    assert resp.status == 200, resp
    assert json.loads(resp.body) == {"message": "File was staged", "file": uid}


def test_post_missing_is_404(server, uid):
    resp = requests.post(server.id_url(uid), timeout=10)
    assert_error(resp, 404, server.prefix)
    assert not server.stored_path(uid).exists()


def test_get_headers_and_bytes(server, uid):
    data = os.urandom(4321)
    assert put(server, uid, data).status_code == 201
    resp = requests.get(server.id_url(uid), timeout=10, headers={"Accept-Encoding": "gzip, deflate"})
    assert resp.status_code == 200
    assert resp.content == data
    h = resp.headers
    assert h["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in h
    assert h["Content-Length"] == str(len(data))
    assert h["Accept-Ranges"] == "bytes"
    assert h.get("ETag")
    from email.utils import parsedate_to_datetime

    stamp = parsedate_to_datetime(h["Last-Modified"]).timestamp()
    assert int(stamp) == int(server.stored_path(uid).stat().st_mtime)


def test_get_gzip_accepted_but_raw_bytes_sent(server, uid):
    data = b"compress me please " * 5000
    assert put(server, uid, data).status_code == 201
    resp = requests.get(server.id_url(uid), timeout=10, stream=True, headers={"Accept-Encoding": "gzip"})
    raw_bytes = resp.raw.read(decode_content=False)
    resp.close()
    assert "Content-Encoding" not in resp.headers
    assert raw_bytes == data


def test_get_missing_is_404(server, uid):
    resp = requests.get(server.id_url(uid), timeout=10)
    assert_error(resp, 404, server.prefix)


def test_delete(server, uid):
    assert put(server, uid, b"bye").status_code == 201
    resp = requests.delete(server.id_url(uid), timeout=10)
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json(), dict)
    assert not server.stored_path(uid).exists()
    assert requests.head(server.id_url(uid), timeout=10).status_code == 404
    assert requests.get(server.id_url(uid), timeout=10).status_code == 404


def test_delete_missing_is_404(server, uid):
    resp = requests.delete(server.id_url(uid), timeout=10)
    assert_error(resp, 404, server.prefix)


def test_delete_then_put_again(server, uid):
    assert put(server, uid, b"one").status_code == 201
    assert requests.delete(server.id_url(uid), timeout=10).status_code == 200
    resp = put(server, uid, b"two!")
    assert resp.status_code == 201
    assert server.stored_path(uid).read_bytes() == b"two!"


@pytest.mark.parametrize(
    ("method", "status"), [("MKCOL", 405), ("LOCK", 405), ("COPY", 501)]
)  # PROPFIND is served (WebDAV stat); MKCOL under namespace = paths; COPY is 501 (gfal2 falls back)
def test_unknown_method_is_405_and_copy_501(server, uid, method, status):
    assert put(server, uid, b"data").status_code == 201
    resp = requests.request(method, server.id_url(uid), timeout=10)
    assert_error(resp, status, server.prefix)
    assert server.stored_path(uid).read_bytes() == b"data"


def test_put_no_header_mtime_is_now(server, uid):
    before = time.time()
    assert put(server, uid, b"now").status_code == 201
    mtime = server.stored_path(uid).stat().st_mtime
    assert before - 120 < mtime < time.time() + 120


def test_error_body_shape(server, uid):
    resp = requests.get(server.id_url(uid), timeout=10)
    body = assert_error(resp, 404, server.prefix)
    assert body["status"] == "404 Not Found"
    assert isinstance(body["traceback"], str)
    assert isinstance(body["version"], str) and body["version"]


def test_head_after_put_matches_get(server, uid):
    data = os.urandom(777)
    assert put(server, uid, data).status_code == 201
    head = requests.head(server.id_url(uid), timeout=10)
    get = requests.get(server.id_url(uid), timeout=10)
    assert int(head.headers["X-Content-Length"]) == len(get.content) == 777
