"""A form upload (``curl -F``, ``requests.put(files=...)``) is refused with 415, unread and
unstored, unless ``allow_multipart`` says the site stores such bodies as they come."""

import json
import shutil
import socket
import subprocess

import pytest
import requests
import schemathesis
from server import assert_error, parse_response, recv_all

HINT = "send the raw bytes (curl -T), not a form"
needs_curl = pytest.mark.skipif(not shutil.which("curl"), reason="curl is required")


def curl_form_put(url, path):
    """``curl -X PUT -F file=@path url``: (status, body)."""
    proc = subprocess.run(
        ["curl", "-sS", "-X", "PUT", "-F", f"file=@{path}", "-w", "\n%{http_code}", url],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    body, _, status = proc.stdout.rpartition(b"\n")
    return int(status), body


def assert_nothing_stored(srv, ident):
    assert requests.head(srv.id_url(ident), timeout=10).status_code == 404
    assert srv.temp_files() == []


@needs_curl
def test_curl_form_put_is_415_and_stores_nothing(server, uid, payload):
    path, _ = payload
    status, body = curl_form_put(server.id_url(uid), path)
    assert status == 415, body[:300]
    doc = json.loads(body)
    assert doc["status"] == "415 Unsupported Media Type"
    assert HINT in doc["message"]
    assert_nothing_stored(server, uid)


def test_requests_files_put_is_415_and_stores_nothing(server, uid, payload):
    path, _ = payload
    with open(path, "rb") as handle:
        resp = requests.put(server.id_url(uid), files={"file": handle}, timeout=30)
    body = assert_error(resp, 415, server.prefix)
    assert HINT in body["message"]
    described = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert "415" in described["paths"]["/{id}"]["put"]["responses"]  # a documented answer...
    schemathesis.openapi.from_dict(described)["/{id}"]["PUT"].validate_response(resp)  # ...as described
    assert_nothing_stored(server, uid)


def test_a_form_body_is_not_read(server, uid):
    """Refused from its head: no 100 Continue, no wait for the 10 MB announced, and the
    connection closes (its body is not drained for a next request)."""
    head = (
        f"PUT /{uid} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n"
        "Content-Type: Multipart/Form-Data; boundary=xyz\r\nExpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head.encode())
        resp = parse_response(recv_all(sock))
    assert resp.status == 415, resp
    assert resp.interim == []
    assert resp.headers.get("connection", "").lower() == "close"
    assert_nothing_stored(server, uid)


@pytest.fixture(scope="module")
def multipart_server(make_server):
    return make_server("multipart", PAI_ALLOW_MULTIPART="true")


@needs_curl
def test_allow_multipart_stores_the_form_as_sent(server, multipart_server, uid, payload):
    """The setting is what tells the two answers apart: the same upload, 415 then 201."""
    path, data = payload
    assert curl_form_put(server.id_url(uid), path)[0] == 415
    status, body = curl_form_put(multipart_server.id_url(uid), path)
    assert status == 201, body[:300]
    stored = requests.get(multipart_server.id_url(uid), timeout=30).content
    assert stored.startswith(b"--") and data in stored  # the envelope, as the site asked
    assert json.loads(body)["total_bytes"] == len(stored)


def test_allow_multipart_takes_requests_files(server, multipart_server, uid, payload):
    path, data = payload
    for srv, status in ((server, 415), (multipart_server, 201)):
        with open(path, "rb") as handle:
            resp = requests.put(srv.id_url(uid), files={"file": handle}, timeout=30)
        assert resp.status_code == status, resp.text
    assert data in requests.get(multipart_server.id_url(uid), timeout=30).content
