"""A full file system under the prefix: 507 with nothing left behind, reads go on,
writes work again once there is room.  The prefix is an 8 MiB tmpfs mounted by the
test (root only; skipped otherwise).
"""

import os

import pytest
import requests
from server import assert_error, wait_until

from .checks import assert_absent, assert_intact, store
from .mounts import tmpfs
from .procs import WORKERS, workers
from .streams import put_while_reading

pytestmark = pytest.mark.posix_only("the space of an HPSS archive is HPSS's, not a local file system's")

SIZE = "8m"


@pytest.fixture
def full_disk(tmp_path, start):
    """A server whose prefix is a small tmpfs; unmounted after the server stops."""
    with tmpfs(tmp_path / "small", SIZE) as prefix:
        srv = start("full", PAI_PREFIX=str(prefix))
        yield srv
        srv.stop()


def refused_for_space(srv, ident, body, chunked):
    resp = put_while_reading(srv.port, ident, body, chunked=chunked)
    assert resp is not None, "the server hung up without answering"
    doc = assert_error(resp, 507, srv.prefix)
    assert "space" in doc["message"]
    assert wait_until(lambda: srv.temp_files() == [], timeout=30), srv.temp_files()
    assert_absent(srv, ident)


def fill(srv, new_id):
    """Store files until the file system refuses them: 1 MiB ones (space reserved up front),
    then 128 KiB ones (written until the space runs out).  Return the ids that fit."""
    stored = []
    for size in (1 << 20, 128 << 10):
        for _ in range(128):
            ident = new_id()
            resp = requests.put(srv.id_url(ident), data=os.urandom(size), timeout=60)
            if resp.status_code == 507:
                assert_absent(srv, ident)
                break
            assert resp.status_code == 201, resp.text
            stored.append(ident)
        else:
            raise AssertionError(f"128 files of {size} bytes fit on a {SIZE} file system")
    return stored


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.quick
def test_disk_full_is_507_and_recovers(full_disk, new_id, chunked):
    srv = full_disk
    pids = workers(srv, WORKERS)
    kept = {new_id(): os.urandom(1 << 20), new_id(): b"small"}
    for ident, data in kept.items():
        store(srv, ident, data)

    # larger than the whole file system
    refused_for_space(srv, new_id(), os.urandom(16 << 20), chunked)
    # fits the free space on its own, but not after the disk has filled up
    filler = fill(srv, new_id)
    assert wait_until(lambda: srv.temp_files() == [], timeout=30)
    refused_for_space(srv, new_id(), os.urandom(768 << 10), chunked)
    assert_intact(srv, kept)  # reads go on while the disk is full

    for ident in filler:
        assert requests.delete(srv.id_url(ident), timeout=30).status_code == 200
    again = {new_id(): os.urandom(3 << 20)}
    resp = put_while_reading(srv.port, next(iter(again)), again[next(iter(again))], chunked=chunked)
    assert resp is not None and resp.status_code == 201, resp and resp.text
    assert_intact(srv, {**kept, **again})
    assert workers(srv, WORKERS) == pids, "a worker died"
