"""Ids: safe names, the id2filename layout, and path traversal attempts."""

import json
import stat

import pytest
import requests
from server import assert_error, id2filename, raw

VALID = ["foo.txt", "123", "A" * 255, "a-b_c.d", "0", "Z.tar.gz"]
# (url path as sent, description)
INVALID = [
    ("..", "dotdot"),
    (".x", "dot-leading"),
    ("a%2Fb", "encoded slash"),
    ("a%2fb", "encoded slash lower"),
    ("%D9%A3", "arabic-indic digit"),
    ("%00", "nul"),
    ("a" * 256, "256 chars"),
    ("-abc", "dash-leading"),
    ("a%20b", "space"),
    ("a%FFb", "not utf-8"),
    ("%C0%AE%C0%AE", "overlong utf-8 dots"),
]


@pytest.mark.parametrize("ident", VALID, ids=lambda s: s[:12])
@pytest.mark.posix_only("uses ids that are names")
def test_valid_safe_names(server, ident):
    url = server.id_url(ident)
    requests.delete(url, timeout=10)  # ids are fixed here: start clean
    data = f"content of {ident}".encode()
    resp = requests.put(url, data=data, timeout=10)
    assert resp.status_code == 201, resp.text
    assert (server.prefix / ident).read_bytes() == data
    head = requests.head(url, timeout=10)
    assert head.status_code == 204
    assert head.headers["X-Pacifica-File"] == str(server.prefix / ident)
    assert requests.get(url, timeout=10).content == data
    post = requests.post(url, timeout=10)
    assert post.json() == {"message": "File was staged", "file": ident}
    assert requests.delete(url, timeout=10).status_code == 200
    assert not (server.prefix / ident).exists()


@pytest.mark.parametrize("method", ["PUT", "GET", "POST", "DELETE", "HEAD"])
@pytest.mark.parametrize("path,desc", INVALID, ids=[d for _, d in INVALID])
def test_invalid_safe_names_are_400(server, method, path, desc):
    before = server.all_files()
    body = b"payload" if method == "PUT" else b""
    headers = [f"Content-Length: {len(body)}"] if method in ("PUT", "POST") else []
    resp = raw(method, "/" + path, server.port, headers=headers, body=body)
    assert resp.status == 400, resp
    if method != "HEAD":
        doc = json.loads(resp.body)
        assert doc["status"].startswith("400")
        assert "total_bytes" not in doc
        assert "Traceback (most recent" not in resp.body.decode("utf-8", "replace")
        assert str(server.prefix).encode() not in resp.body
    assert server.all_files() == before


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE", "POST"])
def test_extra_segment_is_404(server, method):
    resp = requests.request(method, server.url + "/a/b", data=b"x" if method == "PUT" else None, timeout=10)
    assert_error(resp, 404, server.prefix)
    assert not (server.prefix / "a").exists()


PASSWD = open("/etc/passwd", "rb").read()
TRAVERSALS = [
    ("GET", "/../../etc/passwd"),
    ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
    ("GET", "/..%2Fetc%2Fpasswd"),
    ("GET", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
    ("GET", "/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
    ("HEAD", "/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/%2e%2e"),
    ("GET", "/..%5c..%5cetc%5cpasswd"),
    ("DELETE", "/%2e%2e%2fsentinel"),
    ("DELETE", "/..%2Fsentinel"),
    ("PUT", "/%2e%2e%2fpwned"),
    ("PUT", "/..%2Fpwned"),
    ("POST", "/%2e%2e%2fsentinel"),
    ("PATCH", "/%2e%2e%2fpwned"),
    ("GET", "http://127.0.0.1/../../etc/passwd"),
    ("GET", "http://127.0.0.1/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
]


@pytest.mark.parametrize("method,target", TRAVERSALS)
def test_traversal_never_escapes(server, method, target):
    outside = server.prefix.parent
    sentinel = outside / "sentinel"
    sentinel.write_bytes(b"do not touch")
    before = sorted(p.name for p in outside.iterdir())
    if method == "PUT":
        headers, body = ["Content-Length: 5"], b"owned"
    elif method == "PATCH":
        body = json.dumps({"path": str(sentinel)}).encode()
        headers = ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    else:
        headers, body = [], b""
    resp = raw(method, target, server.port, headers=headers, body=body)
    assert not 200 <= resp.status < 300, resp
    assert PASSWD[:40] not in resp.body
    assert b"root:" not in resp.body
    assert sentinel.read_bytes() == b"do not touch"
    assert not (outside / "pwned").exists()
    assert sorted(p.name for p in outside.iterdir()) == before
    assert "x-pacifica-file" not in resp.headers or "passwd" not in resp.headers["x-pacifica-file"]


# --- id2filename mode -------------------------------------------------------------

LAYOUT = [
    (12345, "/39/3039"),
    (1234, "/d2/4d2"),
    (32767, "/ff/7fff"),
    (32768, "/00/8000"),
    (32769, "/01/8001"),
    (255, "/file.ff"),
    (1, "/file.1"),
    (0, "/file.0"),
]


@pytest.fixture(scope="module")
def idserver(make_server):
    return make_server("id2filename", PAI_USE_ID2FILENAME="true")


def test_reference_layout_matches_contract():
    for ident, path in LAYOUT:
        assert id2filename(ident) == path


@pytest.mark.parametrize("ident,rel", LAYOUT, ids=[str(i) for i, _ in LAYOUT])
def test_id2filename_layout(idserver, ident, rel):
    url = idserver.id_url(ident)
    data = f"id {ident}".encode()
    resp = requests.put(url, data=data, timeout=10)
    assert resp.status_code == 201, resp.text
    path = idserver.prefix.joinpath(rel.lstrip("/"))
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    head = requests.head(url, timeout=10)
    assert head.status_code == 204
    assert head.headers["X-Pacifica-File"] == str(idserver.prefix) + rel
    assert requests.get(url, timeout=10).content == data
    assert requests.post(url, timeout=10).json() == {"message": "File was staged", "file": str(ident)}
    assert requests.delete(url, timeout=10).status_code == 200
    assert not path.exists()
    assert requests.head(url, timeout=10).status_code == 404


def test_id2filename_max_id(idserver):
    ident = 2**63 - 1
    resp = requests.put(idserver.id_url(ident), data=b"max", timeout=10)
    assert resp.status_code == 201, resp.text
    path = idserver.prefix.joinpath(id2filename(ident).lstrip("/"))
    assert path.read_bytes() == b"max"
    assert requests.get(idserver.id_url(ident), timeout=10).content == b"max"


@pytest.mark.parametrize("ident", ["foo", "9223372036854775808", "-1", "12a", "1.5", "%D9%A3", "99999999999999999999"])
@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_id2filename_rejects_non_integers(idserver, ident, method):
    before = idserver.all_files()
    resp = requests.request(method, idserver.url + "/" + ident, data=b"x" if method == "PUT" else None, timeout=10)
    assert_error(resp, 400, idserver.prefix)
    assert idserver.all_files() == before


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE"])
def test_id2filename_missing_creates_nothing(idserver, method):
    """Looking for a missing id is a 404 and creates no directories."""
    ident = 0x7A6B5C4D3E  # levels 3e/4d/5c/6b, which no other test uses
    before = sorted(idserver.prefix.rglob("*"))
    resp = requests.request(method, idserver.id_url(ident), timeout=10)
    assert resp.status_code == 404
    if method != "HEAD":
        assert_error(resp, 404, idserver.prefix)
    assert sorted(idserver.prefix.rglob("*")) == before
    assert not (idserver.prefix / "3e").exists()


def test_id2filename_leading_zeros_same_file(idserver):
    """An id is the integer written: 0012346 names the file of 12346; POST echoes the id as given."""
    assert requests.put(idserver.id_url(12346), data=b"zeros", timeout=10).status_code == 201
    assert requests.get(idserver.url + "/0012346", timeout=10).content == b"zeros"
    resp = requests.post(idserver.url + "/0012346", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"message": "File was staged", "file": "0012346"}


def test_id2filename_head_invalid_is_400(idserver):
    resp = requests.head(idserver.url + "/foo", timeout=10)
    assert resp.status_code == 400


def test_id2filename_temp_names_not_addressable(idserver, int_id):
    # a temporary file's name must not be reachable by any id
    (idserver.prefix / ".pyai-tmp-abc").write_bytes(b"secret")
    try:
        resp = raw("GET", "/.pyai-tmp-abc", idserver.port)
        assert resp.status == 400, resp
        assert b"secret" not in resp.body
    finally:
        (idserver.prefix / ".pyai-tmp-abc").unlink()
