"""Partial reads: the original ?byte_range=S-E and the standard Range header."""

import os

import pytest
import requests
from server import assert_error, raw

pytestmark = pytest.mark.posix_only("uses ids that are names")

DATA = os.urandom(1000)
SMALL = b"0123456789abcdefghij"  # 20 bytes


@pytest.fixture(scope="module")
def stored(server):
    """Two files on the default server: (url of 1000 random bytes, url of 20 bytes)."""
    import secrets

    big = server.id_url(f"ranges-{secrets.token_hex(6)}")
    small = server.id_url(f"ranges-small-{secrets.token_hex(6)}")
    assert requests.put(big, data=DATA, timeout=10).status_code == 201
    assert requests.put(small, data=SMALL, timeout=10).status_code == 201
    return big, small


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("0-20", SMALL),
        ("5-100000", SMALL[5:]),
        ("0-1", SMALL[:1]),
        ("3-10", SMALL[3:10]),
        ("19-20", SMALL[19:]),
    ],
)
def test_byte_range_param(server, stored, spec, expected):
    resp = requests.get(stored[1], params={"byte_range": spec}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.content == expected


@pytest.mark.parametrize("spec", ["abc", "5", "7-3", "-1-2", "1-2-3", "a-b"])
def test_byte_range_malformed(server, stored, spec):
    resp = requests.get(stored[1], params={"byte_range": spec}, timeout=10)
    assert_error(resp, 400, server.prefix)


@pytest.mark.parametrize(
    "header,start,stop",
    [
        ("bytes=10-19", 10, 20),
        ("bytes=0-0", 0, 1),
        ("bytes=990-", 990, 1000),
        ("bytes=0-", 0, 1000),
        ("bytes=-5", 995, 1000),
        ("bytes=-5000", 0, 1000),
        ("bytes=500-100000", 500, 1000),
        ("bytes=999-999", 999, 1000),
    ],
)
@pytest.mark.quick
def test_range_header(stored, header, start, stop):
    resp = requests.get(stored[0], headers={"Range": header}, timeout=10)
    assert resp.status_code == 206, resp.text
    assert resp.content == DATA[start:stop]
    assert resp.headers["Content-Range"] == f"bytes {start}-{stop - 1}/1000"
    assert resp.headers["Content-Length"] == str(stop - start)
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert "Content-Encoding" not in resp.headers


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=5000-"])
def test_range_unsatisfiable(server, stored, header):
    resp = requests.get(stored[0], headers={"Range": header}, timeout=10)
    assert resp.status_code == 416, resp.text
    assert resp.headers["Content-Range"] == "bytes */1000"
    assert DATA not in resp.content


@pytest.mark.parametrize("header", ["bytes=x-y", "bytes=-", "bytes=abc", "bytes=1-2-3"])
def test_range_malformed(server, stored, header):
    resp = requests.get(stored[0], headers={"Range": header}, timeout=10)
    assert resp.status_code == 400, resp.text
    assert_error(resp, 400, server.prefix)


def test_multi_range_gives_whole_file(stored):
    resp = requests.get(stored[0], headers={"Range": "bytes=0-1,4-5"}, timeout=10)
    assert resp.status_code == 200
    assert resp.content == DATA
    assert "Content-Range" not in resp.headers


def test_if_range_current_etag(stored):
    etag = requests.get(stored[0], timeout=10).headers["ETag"]
    resp = requests.get(stored[0], headers={"Range": "bytes=100-199", "If-Range": etag}, timeout=10)
    assert resp.status_code == 206
    assert resp.content == DATA[100:200]
    assert resp.headers["Content-Range"] == "bytes 100-199/1000"


def test_if_range_stale_etag(stored):
    resp = requests.get(stored[0], headers={"Range": "bytes=100-199", "If-Range": '"stale-etag"'}, timeout=10)
    assert resp.status_code == 200
    assert resp.content == DATA


def test_etag_changes_with_content(server, uid):
    url = server.id_url(uid)
    assert requests.put(url, data=b"first", timeout=10).status_code == 201
    old = requests.get(url, timeout=10).headers["ETag"]
    assert requests.delete(url, timeout=10).status_code == 200
    assert requests.put(url, data=b"second version", timeout=10).status_code == 201
    new = requests.get(url, timeout=10).headers["ETag"]
    assert old != new
    resp = requests.get(url, headers={"Range": "bytes=0-2", "If-Range": old}, timeout=10)
    assert resp.status_code == 200
    assert resp.content == b"second version"


def test_range_on_raw_socket_keeps_bytes(server, stored):
    path = "/" + stored[0].rsplit("/", 1)[1]
    resp = raw("GET", path, server.port, headers=["Range: bytes=1-3", "Accept-Encoding: gzip"])
    assert resp.status == 206
    assert resp.body == DATA[1:4]
    assert "content-encoding" not in resp.headers


def test_range_missing_file_is_404(server, uid):
    resp = requests.get(server.id_url(uid), headers={"Range": "bytes=0-1"}, timeout=10)
    assert_error(resp, 404, server.prefix)
