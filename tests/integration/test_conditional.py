"""Conditional requests (RFC 9110 section 13) on /<id>: each rule, with requests,
curl -z and wget -N, on every flavor; and the same answers whatever the
compatibility settings say."""

import os
import subprocess

import pytest
import requests
from server import assert_error, raw, raw_request

LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"
EARLIER = "Sun, 06 Nov 1994 08:49:36 GMT"
LATER = "Sun, 06 Nov 1994 08:49:38 GMT"
HEAD_HEADERS = {
    "x-pacifica-messsage",
    "x-pacifica-file",
    "x-content-length",
    "last-modified",
    "x-pacifica-ctime",
    "x-pacifica-bytes-per-level",
    "x-pacifica-file-storage-media",
}


def get(srv, ident, **headers):
    return requests.get(srv.id_url(ident), headers=headers, timeout=30)


def head(srv, ident, **headers):
    return requests.head(srv.id_url(ident), headers=headers, timeout=30)


@pytest.fixture
def stored(server, uid):
    data = os.urandom(20_000)
    resp = requests.put(server.id_url(uid), data=data, headers={"Last-Modified": LAST_MODIFIED}, timeout=30)
    assert resp.status_code == 201, resp.text
    etag = get(server, uid).headers["ETag"]
    return uid, data, etag


def assert_not_modified(resp, etag):
    assert resp.status_code == 304, (resp.status_code, resp.text[:300])
    assert resp.content == b""
    assert resp.headers["ETag"] == etag


# -- GET -----------------------------------------------------------------------------


@pytest.mark.quick
def test_if_none_match_matching_is_304(server, stored):
    uid, _, etag = stored
    resp = get(server, uid, **{"If-None-Match": etag})
    assert_not_modified(resp, etag)
    assert resp.headers["Last-Modified"] == LAST_MODIFIED


@pytest.mark.parametrize("form", ["weak", "list", "star"])
def test_if_none_match_forms(server, stored, form):
    uid, _, etag = stored
    value = {"weak": f"W/{etag}", "list": f'"nope", {etag} , W/"x"', "star": "*"}[form]
    assert_not_modified(get(server, uid, **{"If-None-Match": value}), etag)


@pytest.mark.parametrize(
    "field, value",
    [
        # no entity tag matches
        *(("If-None-Match", value) for value in ['"other"', "garbage", f'W/"{"x" * 10}"']),
        # not a date: the condition is ignored
        *(
            ("If-Modified-Since", value)
            for value in ["yesterday", "784111777", "1994-11-06T08:49:37Z", LAST_MODIFIED + ", " + LAST_MODIFIED]
        ),
    ],
)
def test_a_condition_that_fails_or_cannot_be_read_is_200(server, stored, field, value):
    uid, data, _ = stored
    resp = get(server, uid, **{field: value})
    assert resp.status_code == 200 and resp.content == data


def test_if_modified_since(server, stored):
    uid, data, etag = stored
    assert_not_modified(get(server, uid, **{"If-Modified-Since": LAST_MODIFIED}), etag)
    assert_not_modified(get(server, uid, **{"If-Modified-Since": LATER}), etag)
    resp = get(server, uid, **{"If-Modified-Since": EARLIER})
    assert resp.status_code == 200 and resp.content == data


def test_obsolete_date_forms_are_read(server, stored):
    uid, _, etag = stored
    for value in ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert_not_modified(get(server, uid, **{"If-Modified-Since": value}), etag)


def test_if_modified_since_is_ignored_beside_if_none_match(server, stored):
    uid, data, _ = stored
    resp = get(server, uid, **{"If-None-Match": '"other"', "If-Modified-Since": LATER})
    assert resp.status_code == 200 and resp.content == data


def test_if_match(server, stored):
    uid, data, etag = stored
    for value in (etag, "*", f'"a", {etag}'):
        resp = get(server, uid, **{"If-Match": value})
        assert resp.status_code == 200 and resp.content == data
    for value in ('"other"', f"W/{etag}"):  # If-Match compares strongly: a weak tag never matches
        resp = get(server, uid, **{"If-Match": value})
        assert_error(resp, 412, server.prefix)
        assert resp.headers["ETag"] == etag


def test_if_unmodified_since(server, stored):
    uid, data, _ = stored
    assert_error(get(server, uid, **{"If-Unmodified-Since": EARLIER}), 412, server.prefix)
    for value in (LAST_MODIFIED, LATER, "not a date"):
        resp = get(server, uid, **{"If-Unmodified-Since": value})
        assert resp.status_code == 200 and resp.content == data


def test_if_unmodified_since_is_ignored_beside_if_match(server, stored):
    uid, data, etag = stored
    resp = get(server, uid, **{"If-Match": etag, "If-Unmodified-Since": EARLIER})
    assert resp.status_code == 200 and resp.content == data


def test_if_match_is_evaluated_before_if_none_match(server, stored):
    uid, _, etag = stored
    assert_error(get(server, uid, **{"If-Match": '"other"', "If-None-Match": etag}), 412, server.prefix)


def test_a_304_or_412_wins_over_range(server, stored):
    uid, _, etag = stored
    assert_not_modified(get(server, uid, Range="bytes=0-9", **{"If-None-Match": etag}), etag)
    assert_error(get(server, uid, Range="bytes=0-9", **{"If-Match": '"other"'}), 412, server.prefix)
    resp = get(server, uid, Range="bytes=0-9", **{"If-Match": etag, "If-Range": etag})
    assert resp.status_code == 206 and len(resp.content) == 10


def test_conditions_on_a_missing_id_are_404(server, uid):
    for method in ("GET", "HEAD", "DELETE", "POST"):
        for header in ({"If-None-Match": "*"}, {"If-Match": "*"}, {"If-Modified-Since": LATER}):
            resp = requests.request(method, server.id_url(uid), headers=header, timeout=30)
            assert resp.status_code == 404, (method, header, resp.status_code)


# -- HEAD ----------------------------------------------------------------------------


def test_head_without_conditions_keeps_the_pacifica_headers(server, stored):
    uid, _, etag = stored
    resp = head(server, uid)
    assert resp.status_code == 204
    assert HEAD_HEADERS <= {name for name, _ in resp.headers.lower_items()}
    assert resp.headers["Last-Modified"] == "784111777.0"  # epoch seconds: cartd float()s it
    assert resp.headers["ETag"] == etag


def test_head_not_modified_carries_the_same_validators(server, stored):
    uid, _, etag = stored
    plain = head(server, uid)
    resp = head(server, uid, **{"If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.headers["ETag"] == etag
    for name in HEAD_HEADERS:
        assert resp.headers[name] == plain.headers[name], name
    assert head(server, uid, **{"If-Modified-Since": LAST_MODIFIED}).status_code == 304


def test_head_precondition_failed(server, stored):
    uid, _, _ = stored
    resp = head(server, uid, **{"If-Match": '"other"'})
    assert resp.status_code == 412
    assert resp.headers["Content-Type"] == "application/json"


# -- writes --------------------------------------------------------------------------


def test_put_if_none_match_star_is_create_only(server, uid):
    resp = requests.put(server.id_url(uid), data=b"first", headers={"If-None-Match": "*"}, timeout=30)
    assert resp.status_code == 201, resp.text
    resp = requests.put(server.id_url(uid), data=b"second", headers={"If-None-Match": "*"}, timeout=30)
    assert_error(resp, 412, server.prefix)
    assert get(server, uid).content == b"first"


def test_put_412_leaves_the_body_unread(server, uid):
    """The 412 comes before any byte of the body: no 100 Continue, and the connection closes."""
    assert requests.put(server.id_url(uid), data=b"stored", timeout=30).status_code == 201
    request = (
        f"PUT /{uid} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n"
        "Expect: 100-continue\r\nIf-None-Match: *\r\n\r\n"
    ).encode()
    resp = raw_request(server.port, request)  # reads until the server closes
    assert resp.status == 412, resp
    assert resp.interim == []
    assert resp.headers.get("connection") == "close"


def test_put_if_match(server, int_id, stored):
    other, _, etag = stored
    # no file under int_id: If-Match cannot hold
    resp = requests.put(server.id_url(int_id), data=b"x", headers={"If-Match": "*"}, timeout=30)
    assert_error(resp, 412, server.prefix)
    assert get(server, int_id).status_code == 404
    # a matching If-Match on a write-once archive: the write-once rule still answers
    resp = requests.put(server.id_url(other), data=b"x", headers={"If-Match": etag}, timeout=30)
    assert_error(resp, 409, server.prefix)
    resp = requests.put(server.id_url(other), data=b"x", headers={"If-Match": '"other"'}, timeout=30)
    assert_error(resp, 412, server.prefix)


def test_delete_if_match(server, stored):
    uid, data, etag = stored
    resp = requests.delete(server.id_url(uid), headers={"If-Match": '"other"'}, timeout=30)
    assert_error(resp, 412, server.prefix)
    assert get(server, uid).content == data
    resp = requests.delete(server.id_url(uid), headers={"If-Match": etag}, timeout=30)
    assert resp.status_code == 200
    assert get(server, uid).status_code == 404


def test_patch_if_none_match_star_is_412_on_a_stored_id(server, stored):
    uid, data, _ = stored
    resp = requests.patch(
        server.id_url(uid), json={"path": str(server.prefix / "nothing")}, headers={"If-None-Match": "*"}, timeout=30
    )
    assert_error(resp, 412, server.prefix)


def test_with_overwrite_allowed(make_server, uid):
    """allow_overwrite changes what a plain PUT does, not what a conditional one means."""
    srv = make_server("overwrite", PAI_ALLOW_OVERWRITE="true")
    assert requests.put(srv.id_url(uid), data=b"one", timeout=30).status_code == 201
    etag = get(srv, uid).headers["ETag"]
    assert_error(requests.put(srv.id_url(uid), data=b"two", headers={"If-None-Match": "*"}, timeout=30), 412)
    assert_error(requests.put(srv.id_url(uid), data=b"two", headers={"If-Match": '"old"'}, timeout=30), 412)
    assert get(srv, uid).content == b"one"
    assert requests.put(srv.id_url(uid), data=b"three", headers={"If-Match": etag}, timeout=30).status_code == 201
    assert get(srv, uid).content == b"three"
    assert get(srv, uid).headers["ETag"] != etag
    assert get(srv, uid, **{"If-None-Match": etag}).status_code == 200


# -- curl and wget -------------------------------------------------------------------


def test_curl_z_sends_if_modified_since(server, stored, tmp_path):
    uid, data, _ = stored
    out = tmp_path / "got"

    def curl_z(date):
        proc = subprocess.run(
            ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "-z", date, server.id_url(uid)],
            capture_output=True,
            timeout=60,
            check=True,
        )
        return proc.stdout.decode()

    assert curl_z(LAST_MODIFIED) == "304"
    assert curl_z(EARLIER) == "200"
    assert out.read_bytes() == data


def test_wget_timestamping(server, stored, tmp_path):
    uid, data, _ = stored
    env = {**os.environ, "HOME": str(tmp_path)}
    args = ["wget", "-N", "-S", server.id_url(uid)]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / uid).read_bytes() == data
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert second.returncode == 0, second.stderr
    assert "304" in second.stderr and "not modified on server" in second.stderr, second.stderr


def test_raw_conditional_get(server, stored):
    """The 304 has no body and no Content-Length of a body (a keep-alive client reads nothing)."""
    uid, _, etag = stored
    resp = raw("GET", f"/{uid}", server.port, headers=[f"If-None-Match: {etag}"])
    assert resp.status == 304
    assert resp.body == b""
    assert "transfer-encoding" not in resp.headers
