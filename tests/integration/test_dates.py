"""Last-Modified on PUT sets the stored mtime; HEAD and GET report it."""

import time
from email.utils import parsedate_to_datetime

import pytest
import requests

INSTANT = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT

FORMATS = {
    "rfc1123": "Sun, 06 Nov 1994 08:49:37 GMT",
    "rfc850": "Sunday, 06-Nov-94 08:49:37 GMT",
    "asctime": "Sun Nov  6 08:49:37 1994",
    "iso8601": "1994-11-06T08:49:37Z",
    "epoch": "784111777",
}


@pytest.mark.parametrize("value", FORMATS.values(), ids=list(FORMATS))
def test_last_modified_formats(server, uid, value):
    resp = requests.put(server.id_url(uid), data=b"dated", headers={"Last-Modified": value}, timeout=10)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["total_bytes"] == 5
    assert "warning" not in body
    st = server.stored_path(uid).stat()
    assert st.st_mtime == INSTANT
    head = requests.head(server.id_url(uid), timeout=10)
    assert float(head.headers["Last-Modified"]) == INSTANT
    get = requests.get(server.id_url(uid), timeout=10)
    assert parsedate_to_datetime(get.headers["Last-Modified"]).timestamp() == INSTANT
    assert get.headers["Last-Modified"] == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize("value", ["not a date", "Sun, 99 Foo 1994 99:99:99 GMT", "yesterday"])
def test_garbage_last_modified_stores_with_warning(server, uid, value):
    before = time.time()
    resp = requests.put(server.id_url(uid), data=b"garbage date", headers={"Last-Modified": value}, timeout=10)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["message"] == "File added to archive"
    assert body["total_bytes"] == 12
    assert "warning" in body and body["warning"]
    path = server.stored_path(uid)
    assert path.read_bytes() == b"garbage date"
    assert before - 120 < path.stat().st_mtime < time.time() + 120


def test_no_last_modified_is_now(server, uid):
    before = time.time()
    resp = requests.put(server.id_url(uid), data=b"undated", timeout=10)
    assert resp.status_code == 201
    assert "warning" not in resp.json()
    mtime = server.stored_path(uid).stat().st_mtime
    assert before - 120 < mtime < time.time() + 120
    head = requests.head(server.id_url(uid), timeout=10)
    assert abs(float(head.headers["Last-Modified"]) - mtime) < 1e-3
