"""An upload that announces a large body and sends (almost) none of it holds no disk space.

Space used to be reserved for the whole Content-Length as soon as the head
arrived: on a 64 MiB file system one 60 MiB PUT that sent a few bytes made
another client's 8 MiB PUT fail with 507.  Now space is reserved in steps as
the bytes arrive.  The prefix is a 64 MiB tmpfs mounted by the test (root
only; skipped otherwise).
"""

import os
import socket

import pytest
import requests
from faults.mounts import tmpfs
from server import wait_until

MiB = 1 << 20
HELD = 60 * MiB  # announced by the client that stalls
SENT = 1000  # bytes of it actually sent
OTHER = 8 * MiB  # another client's upload, sent whole


@pytest.fixture
def small_disk(tmp_path, fresh_server):
    with tmpfs(tmp_path / "small", "64m") as prefix:
        srv = fresh_server.start("reservation", PAI_PREFIX=str(prefix), PAI_WORKERS="2", PAI_RECEIVE_TIMEOUT="30")
        yield srv
        srv.stop()


def test_stalled_upload_leaves_room_for_others(small_disk, uid):
    srv = small_disk
    held = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    try:
        held.sendall(f"PUT /{uid}-held HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {HELD}\r\n\r\n".encode())
        held.sendall(os.urandom(SENT))
        # it has taken its bytes (and reserved whatever it reserves for them)
        assert wait_until(lambda: srv.received() == [SENT], timeout=10), srv.received()
        data = os.urandom(OTHER)
        resp = requests.put(srv.id_url(uid), data=data, timeout=30)
        assert resp.status_code == 201, resp.text
        assert requests.get(srv.id_url(uid), timeout=30).content == data
    finally:
        held.close()  # the body is short: the upload fails and is cleaned up
    assert wait_until(lambda: srv.temp_files() == [], timeout=30), srv.temp_files()
    assert requests.head(srv.id_url(f"{uid}-held"), timeout=30).status_code == 404
    assert [p.name for p in srv.all_files()] == [uid]
