"""Checksums on the hsmsideband backend: stored as on posix, sent on HEAD (database rows) and GET."""

import base64
import hashlib
import os

import requests
from server import assert_error

from .test_http import head, new_id, put


def test_checksum_on_head_and_get_and_client_digest_checked(sideband, samdb):
    ident, data = new_id(), os.urandom(2 * 1024 * 1024 + 3)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    path = put(sideband, ident, data, **{"Content-Digest": f"sha-256=:{digest}:"})
    samdb.record(path, online=True, mtime=1_600_000_000, ctime=1_600_000_123)
    h = head(sideband, ident).headers
    assert h["Repr-Digest"] == f"sha-256=:{digest}:" and h["Digest"] == f"SHA-256={digest}"
    get = requests.get(sideband.id_url(ident), timeout=10)
    assert get.content == data and get.headers["Digest"] == f"SHA-256={digest}"
    wrong = new_id()
    other = base64.b64encode(hashlib.sha256(data[1:]).digest()).decode()
    resp = requests.put(sideband.id_url(wrong), data=data, headers={"Digest": f"SHA-256={other}"}, timeout=30)
    assert "sha-256" in assert_error(resp, 400)["message"]
    assert head(sideband, wrong).status_code == 404
    assert not os.path.exists(sideband.stored_path(wrong))
