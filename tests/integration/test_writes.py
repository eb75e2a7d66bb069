"""Write-once, overwrite, 411/413, atomic uploads and the start-up sweep."""

import json
import os
import socket
import struct
import time

import pytest
import requests
from server import assert_error, raw, raw_request, recv_all, wait_until

# --- write-once and overwrite -------------------------------------------------------


def test_second_put_is_409(server, uid):
    url = server.id_url(uid)
    assert requests.put(url, data=b"original bytes", timeout=10).status_code == 201
    resp = requests.put(url, data=b"replacement!!", timeout=10)
    assert_error(resp, 409, server.prefix)
    assert server.stored_path(uid).read_bytes() == b"original bytes"
    assert requests.get(url, timeout=10).content == b"original bytes"
    assert server.temp_files() == []


def test_second_put_chunked_is_409(server, uid):
    url = server.id_url(uid)
    assert requests.put(url, data=b"first", timeout=10).status_code == 201
    resp = requests.put(url, data=iter([b"sec", b"ond"]), timeout=10)
    assert_error(resp, 409, server.prefix)
    assert server.stored_path(uid).read_bytes() == b"first"


@pytest.fixture(scope="module")
def overwrite_server(make_server):
    return make_server("overwrite", PAI_ALLOW_OVERWRITE="true")


def test_overwrite_allowed(overwrite_server, uid):
    url = overwrite_server.id_url(uid)
    assert requests.put(url, data=b"version one", timeout=10).status_code == 201
    resp = requests.put(url, data=b"v2", timeout=10)
    assert resp.status_code == 201, resp.text
    assert resp.json()["total_bytes"] == 2
    path = overwrite_server.stored_path(uid)
    assert path.read_bytes() == b"v2"
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert requests.get(url, timeout=10).content == b"v2"
    assert overwrite_server.temp_files() == []


# --- 411 and 413 ------------------------------------------------------------------


def test_put_without_length_is_411(server, uid):
    resp = raw("PUT", f"/{uid}", server.port)
    assert resp.status == 411, resp
    doc = json.loads(resp.body)
    assert doc["status"].startswith("411")
    assert "total_bytes" not in doc
    assert requests.head(server.id_url(uid), timeout=10).status_code == 404
    assert not server.stored_path(uid).exists()


@pytest.fixture(scope="module")
def limited(make_server):
    return make_server("limited", PAI_MAX_BODY_SIZE="1000")


def test_max_body_content_length_413(limited, uid):
    resp = requests.put(limited.id_url(uid), data=os.urandom(2000), timeout=10)
    assert_error(resp, 413, limited.prefix)
    assert requests.head(limited.id_url(uid), timeout=10).status_code == 404
    assert not limited.stored_path(uid).exists()
    assert wait_until(lambda: limited.temp_files() == [], timeout=10)


def test_max_body_chunked_413(limited, uid):
    def gen():
        for _ in range(20):
            yield os.urandom(100)

    try:
        resp = requests.put(limited.id_url(uid), data=gen(), timeout=10)
    except requests.ConnectionError:
        resp = None  # the server may hang up once it has answered
    if resp is not None:
        assert_error(resp, 413, limited.prefix)
    assert requests.head(limited.id_url(uid), timeout=10).status_code == 404
    assert not limited.stored_path(uid).exists()
    assert wait_until(lambda: limited.temp_files() == [], timeout=10)


def test_max_body_chunked_413_raw(limited, uid):
    chunk = b"x" * 500
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    resp = raw("PUT", f"/{uid}", limited.port, headers=["Transfer-Encoding: chunked"], body=body)
    assert resp.status == 413, resp
    assert "total_bytes" not in json.loads(resp.body)
    assert not limited.stored_path(uid).exists()


@pytest.mark.posix_only("uses ids that are names")
def test_max_body_at_limit_ok(limited, uid):
    data = os.urandom(1000)
    resp = requests.put(limited.id_url(uid), data=data, timeout=10)
    assert resp.status_code == 201, resp.text
    assert limited.stored_path(uid).read_bytes() == data
    chunked = requests.put(limited.id_url(uid + "c"), data=iter([data[:500], data[500:]]), timeout=10)
    assert chunked.status_code == 201, chunked.text
    assert limited.stored_path(uid + "c").read_bytes() == data


def test_unlimited_by_default(server, uid):
    data = os.urandom(3 * 1024 * 1024)
    resp = requests.put(server.id_url(uid), data=data, timeout=30)
    assert resp.status_code == 201


# --- atomicity --------------------------------------------------------------------


@pytest.fixture(scope="module")
def atomic_server(make_server):
    """A server of its own, so 'no leftover files' is about these tests only."""
    return make_server("atomic")


def _no_leftovers(srv, ident):
    return srv.temp_files() == [] and not srv.stored_path(ident).exists()


def test_short_body_then_close(atomic_server, uid):
    srv = atomic_server
    before = srv.all_files()
    head = (f"PUT /{uid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        sock.sendall(head + b"y" * 500)
        sock.shutdown(socket.SHUT_WR)
        answer = recv_all(sock)
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert not 200 <= status < 300, answer
        assert b"total_bytes" not in answer
    assert wait_until(lambda: _no_leftovers(srv, uid), timeout=30), srv.all_files()
    assert requests.head(srv.id_url(uid), timeout=10).status_code == 404
    assert srv.all_files() == before
    # the id is still free
    resp = requests.put(srv.id_url(uid), data=b"z" * 1000, timeout=10)
    assert resp.status_code == 201, resp.text
    assert srv.stored_path(uid).read_bytes() == b"z" * 1000


def test_disconnect_mid_upload(atomic_server, uid):
    srv = atomic_server
    before = srv.all_files()
    total = 50 * 1024 * 1024
    head = (f"PUT /{uid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {total}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    try:
        sock.sendall(head)
        block = os.urandom(64 * 1024)
        for _ in range(32):  # 2 MiB of 50
            sock.sendall(block)
        # wait until the server is receiving (a temporary file exists), then hang up hard
        wait_until(lambda: srv.temp_files() != [], timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    assert wait_until(lambda: _no_leftovers(srv, uid), timeout=30), srv.all_files()
    assert requests.head(srv.id_url(uid), timeout=10).status_code == 404
    assert srv.all_files() == before
    resp = requests.put(srv.id_url(uid), data=b"retry", timeout=10)
    assert resp.status_code == 201
    assert requests.get(srv.id_url(uid), timeout=10).content == b"retry"


def test_body_longer_than_content_length_not_mixed(atomic_server, uid):
    """Extra bytes after the announced body are not part of the stored file."""
    srv = atomic_server
    request = (f"PUT /{uid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhelloEXTRA").encode()
    resp = raw_request(srv.port, request)
    assert resp.status == 201, resp
    assert json.loads(resp.body)["total_bytes"] == 5
    assert srv.stored_path(uid).read_bytes() == b"hello"


def _make_old(*paths):
    an_hour_ago = time.time() - 3600
    for path in paths:
        os.utime(path, (an_hour_ago, an_hour_ago))


@pytest.mark.posix_only("the hpss sweep removes temporary files by age")
def test_stale_temp_file_swept_at_start(fresh_server, tmp_path):
    prefix = tmp_path / "sweep-prefix"
    prefix.mkdir()
    stale = prefix / ".pyai-tmp-deadbeef0123"
    stale.write_bytes(b"half an upload")
    _make_old(stale)  # the sweep leaves younger ones (sweep_min_age) alone
    keep = prefix / "keepme"
    keep.write_bytes(b"a real file")
    srv = fresh_server.start("sweep", PAI_PREFIX=str(prefix))
    assert wait_until(lambda: not stale.exists(), timeout=15), list(prefix.iterdir())
    assert keep.read_bytes() == b"a real file"
    assert requests.get(srv.id_url("keepme"), timeout=10).content == b"a real file"


@pytest.mark.posix_only("the hpss sweep removes temporary files by age")
def test_stale_temp_file_swept_id2filename(fresh_server, tmp_path):
    prefix = tmp_path / "sweep-prefix2"
    (prefix / "39").mkdir(parents=True)
    stale = prefix / "39" / ".pyai-tmp-cafe"
    stale.write_bytes(b"half")
    stale_top = prefix / ".pyai-tmp-top"
    stale_top.write_bytes(b"half")
    _make_old(stale, stale_top)
    kept = prefix / "39" / "3039"
    kept.write_bytes(b"id 12345")
    srv = fresh_server.start("sweep2", PAI_PREFIX=str(prefix), PAI_USE_ID2FILENAME="true")
    assert wait_until(lambda: not stale_top.exists() and not stale.exists(), timeout=15), list(prefix.rglob("*"))
    assert requests.get(srv.id_url(12345), timeout=10).content == b"id 12345"
