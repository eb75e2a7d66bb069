"""Assertions the fault tests share: what is stored is exact, what failed left nothing."""

import hashlib
import os

import requests
from server import assert_error


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def store(srv, ident, data):
    resp = requests.put(srv.id_url(ident), data=data, timeout=60)
    assert resp.status_code == 201, resp.text
    assert resp.json()["total_bytes"] == len(data)


def store_some(srv, new_id, sizes=(0, 1, 4096, 70_000, 3 << 20)):
    """Files of the given sizes under fresh ids: {id: bytes}."""
    files = {new_id(): os.urandom(size) for size in sizes}
    for ident, data in files.items():
        store(srv, ident, data)
    return files


def assert_intact(srv, files):
    """Every id serves exactly its bytes."""
    for ident, data in files.items():
        resp = requests.get(srv.id_url(ident), timeout=60)
        assert resp.status_code == 200, (ident, resp.status_code, resp.text[:300])
        assert sha256(resp.content) == sha256(data), f"id {ident}: bytes differ"


def assert_absent(srv, ident):
    """Nothing under the id: HEAD and GET say 404 and no file is at its place."""
    assert requests.head(srv.id_url(ident), timeout=30).status_code == 404
    assert_error(requests.get(srv.id_url(ident), timeout=30), 404, srv.prefix)
    assert not srv.stored_path(ident).exists()
