"""The file system under the prefix fails: read-only, gone, or answering EIO.

Every request that needs the failed part gets a 5xx JSON error naming the
operation (never a 404 that would tell a client its file is gone, never a
traceback or a path); what still works keeps working; the workers stay up (no
crash loop); and the service recovers by itself when the file system does.
"""

import os
import signal

import pytest
import requests
from server import assert_error

from .checks import assert_intact, store, store_some
from .mounts import Ext4OnLoop, remount, tmpfs
from .procs import WORKERS, workers

pytestmark = pytest.mark.posix_only("the hpss backend's storage is HPSS (tests/hpss covers it going away)")


def assert_fails(resp, srv, method):
    """A 5xx JSON error whose document names the failed request."""
    assert 500 <= resp.status_code < 600, (resp.status_code, resp.text[:300])
    doc = assert_error(resp, resp.status_code, srv.prefix)
    assert method in doc["message"] or doc["traceback"].startswith(method), doc
    return doc


def worker_restarts(srv, pids):
    """A worker that dies while the storage is failing is replaced by one that boots and serves."""
    os.kill(pids[0], signal.SIGKILL)
    now = workers(srv, WORKERS)
    assert srv.proc.poll() is None, "the master stopped"
    assert pids[0] not in now
    return now


def writes_fail(srv, files, new_id):
    ident = new_id()
    assert_fails(requests.put(srv.id_url(ident), data=b"x" * 5000, timeout=30), srv, "PUT")
    assert_fails(requests.put(srv.id_url(ident), data=iter([b"x" * 5000]), timeout=30), srv, "PUT")
    assert_fails(requests.delete(srv.id_url(next(iter(files))), timeout=30), srv, "DELETE")
    assert srv.temp_files() == []


def test_read_only_prefix(tmp_path, start, new_id):
    with tmpfs(tmp_path / "ro", "16m") as prefix:
        srv = start("read-only", PAI_PREFIX=str(prefix))
        try:
            files = store_some(srv, new_id)
            pids = workers(srv, WORKERS)
            remount(prefix, "ro")
            for _ in range(3):
                writes_fail(srv, files, new_id)
                assert_intact(srv, files)  # reads go on
                assert requests.head(srv.id_url(next(iter(files))), timeout=30).status_code == 204
            assert workers(srv, WORKERS) == pids, "workers restarted"
            pids = worker_restarts(srv, pids)
            writes_fail(srv, files, new_id)
            assert_intact(srv, files)
            remount(prefix, "rw")
            store(srv, new_id(), b"writable again")
            assert_intact(srv, files)
        finally:
            srv.stop()


def test_vanished_prefix(tmp_path, start, new_id):
    prefix = tmp_path / "archive"
    srv = start("vanished", PAI_PREFIX=str(prefix))
    files = store_some(srv, new_id)
    pids = workers(srv, WORKERS)
    away = tmp_path / "archive-moved-away"
    os.rename(prefix, away)
    some = next(iter(files))
    for _ in range(3):
        assert_fails(requests.get(srv.id_url(some), timeout=30), srv, "GET")
        assert 500 <= requests.head(srv.id_url(some), timeout=30).status_code < 600
        assert_fails(requests.post(srv.id_url(some), timeout=30), srv, "POST")
        assert_fails(requests.put(srv.id_url(new_id()), data=b"y" * 5000, timeout=30), srv, "PUT")
        assert_fails(requests.delete(srv.id_url(some), timeout=30), srv, "DELETE")
        assert not prefix.exists(), "a request re-created the missing prefix as a new, empty archive"
    assert requests.get(srv.url + "/", timeout=30).status_code == 200
    assert workers(srv, WORKERS) == pids, "workers restarted"
    worker_restarts(srv, pids)
    assert_fails(requests.get(srv.id_url(some), timeout=30), srv, "GET")
    assert not prefix.exists(), "a new worker re-created the missing prefix as a new, empty archive"
    os.rename(away, prefix)
    assert_intact(srv, files)
    store(srv, new_id(), b"back")


def test_file_system_answering_eio(tmp_path, start, new_id):
    with Ext4OnLoop(tmp_path / "disk.img", tmp_path / "ext4") as disk:
        srv = start("eio", PAI_PREFIX=str(disk.mountpoint))
        try:
            files = store_some(srv, new_id)
            pids = workers(srv, WORKERS)
            disk.shutdown()
            for _ in range(3):
                for ident in files:
                    doc = assert_fails(requests.get(srv.id_url(ident), timeout=30), srv, "GET")
                    assert "Input/output error" in doc["message"], doc
                doc = assert_fails(requests.put(srv.id_url(new_id()), data=os.urandom(2 << 20), timeout=30), srv, "PUT")
                assert "Input/output error" in doc["message"], doc
            assert workers(srv, WORKERS) == pids, "workers restarted"
            disk.restart()
            assert_intact(srv, files)
            store(srv, new_id(), b"healthy again")
        finally:
            srv.stop()
