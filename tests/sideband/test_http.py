"""The hsmsideband backend over HTTP: HEAD from the sideband database rows, file I/O as posix, recalls."""

import os
import posixpath
import re
import secrets
import time

import pytest
import requests
from server import assert_error, assert_head_not_found, wait_until

from pyai.archive.ids import id2filename

from .mariadb import SamDB


def new_id():
    return str(secrets.randbits(40) | (1 << 41))


def head(srv, ident):
    return requests.head(srv.id_url(ident), timeout=10)


def put(srv, ident, data, **headers):
    resp = requests.put(srv.id_url(ident), data=data, headers=headers, timeout=30)
    assert resp.status_code == 201, resp.text
    return srv.stored_path(ident)


def records_access_times(directory):
    """True when reading a file whose atime is older than its mtime updates the atime (relatime, strictatime)."""
    probe = directory / f".atime-probe-{secrets.token_hex(4)}"
    probe.write_bytes(b"probe")
    try:
        os.utime(probe, (1, time.time()))
        probe.read_bytes()
        return probe.stat().st_atime > 1
    finally:
        probe.unlink()


def test_head_disk_from_the_database(sideband, samdb):
    ident, data = new_id(), os.urandom(4321)
    path = put(sideband, ident, data)
    samdb.record(path, online=True, mtime=1_600_000_000, ctime=1_600_000_123)
    resp = head(sideband, ident)
    assert resp.status_code == 204
    h = resp.headers
    assert h["X-Pacifica-Messsage"] == "File was found"
    assert h["X-Pacifica-File-Storage-Media"] == "disk"
    assert h["X-Pacifica-Bytes-Per-Level"] == "(4321,)"
    assert h["X-Content-Length"] == "4321"
    assert h["X-Pacifica-File"] == str(path)
    # the times are the database's, not the file system's
    assert float(h["Last-Modified"]) == 1_600_000_000.0
    assert float(h["X-Pacifica-Ctime"]) == 1_600_000_123.0


@pytest.mark.quick
def test_head_tape_from_the_database(sideband, samdb):
    ident, data = new_id(), os.urandom(1000)
    path = put(sideband, ident, data)
    # the database's size wins: the HSM may have released the disk copy
    samdb.record(path, online=False, size=123456, mtime=1_500_000_000, ctime=1_500_000_001)
    h = head(sideband, ident).headers
    assert h["X-Pacifica-File-Storage-Media"] == "tape"
    assert h["X-Pacifica-Bytes-Per-Level"] == "(0, 123456)"
    assert h["X-Content-Length"] == "123456"
    assert float(h["Last-Modified"]) == 1_500_000_000.0
    assert float(h["X-Pacifica-Ctime"]) == 1_500_000_001.0
    samdb.set_online(path, True)
    h = head(sideband, ident).headers
    assert h["X-Pacifica-File-Storage-Media"] == "disk"
    assert h["X-Pacifica-Bytes-Per-Level"] == "(123456,)"


def test_head_missing(sideband, samdb):
    resp = head(sideband, new_id())
    assert resp.status_code == 404
    assert_head_not_found(resp.headers.get)


def test_head_file_the_database_still_lists_after_delete_is_404(sideband, samdb):
    ident = new_id()
    path = put(sideband, ident, b"short-lived")
    samdb.record(path, online=True)
    assert requests.delete(sideband.id_url(ident), timeout=10).status_code == 200
    # the HSM has not caught up with the removal: the file system says it is gone
    assert head(sideband, ident).status_code == 404


def test_head_file_on_disk_not_yet_in_the_database(sideband, samdb):
    ident, data = new_id(), os.urandom(777)
    path = put(sideband, ident, data, **{"Last-Modified": "Sun, 06 Nov 1994 08:49:37 GMT"})
    resp = head(sideband, ident)
    assert resp.status_code == 204
    h = resp.headers
    assert h["X-Pacifica-File-Storage-Media"] == "disk"
    assert h["X-Pacifica-Bytes-Per-Level"] == "(777,)"
    assert h["X-Content-Length"] == "777"
    assert float(h["Last-Modified"]) == 784111777.0
    assert abs(float(h["X-Pacifica-Ctime"]) - path.stat().st_ctime) < 1
    # a file placed on the file system by other means than PUT, too
    other = new_id()
    target = sideband.stored_path(other)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"from elsewhere")
    assert head(sideband, other).headers["X-Pacifica-Bytes-Per-Level"] == "(14,)"


@pytest.mark.parametrize("impl", ["c", "python"])
def test_put_get_patch_delete(sideband_pool, samdb, impl):
    srv = sideband_pool.start(f"io-{impl}", PYAI_IMPL=impl)
    ident, data = "12345", os.urandom(3_000_000)
    resp = requests.put(srv.id_url(ident), data=data, timeout=30)
    assert resp.status_code == 201 and resp.json()["total_bytes"] == len(data)
    stored = srv.prefix / "39" / "3039"  # the original's id2filename layout
    assert stored.read_bytes() == data and stored.stat().st_mode & 0o777 == 0o444
    assert_error(requests.put(srv.id_url(ident), data=b"again", timeout=10), 409, srv.prefix)
    assert_error(requests.put(srv.id_url("name.txt"), data=b"x", timeout=10), 400, srv.prefix)
    got = requests.get(srv.id_url(ident), timeout=30)
    assert got.status_code == 200 and got.content == data
    part = requests.get(srv.id_url(ident), headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:200]
    assert requests.get(srv.id_url(ident) + "?byte_range=5-10", timeout=10).content == data[5:10]

    # PATCH a file from inside the prefix
    incoming = srv.prefix / "incoming"
    incoming.mkdir()
    source = incoming / "file.dat"
    source.write_bytes(b"moved in")
    moved = "255"
    resp = requests.patch(srv.id_url(moved), json={"path": str(source)}, timeout=10)
    assert resp.status_code == 200 and resp.json() == {"message": "File Moved Successfully"}
    assert not source.exists() and (srv.prefix / "file.ff").read_bytes() == b"moved in"
    samdb.record(srv.prefix / "file.ff", online=True, mtime=1_234_567_890)
    h = head(srv, moved).headers
    assert h["X-Pacifica-File-Storage-Media"] == "disk" and float(h["Last-Modified"]) == 1_234_567_890.0

    assert requests.delete(srv.id_url(ident), timeout=10).status_code == 200
    assert not stored.exists()
    assert head(srv, ident).status_code == 404
    assert_error(requests.get(srv.id_url(ident), timeout=10), 404, srv.prefix)
    assert srv.temp_files() == []


def recalls_read(srv):
    """How many recalls (of a POST) have read their file to the end: the count of the stage waits
    /metrics reports for Pacifica's API."""
    text = requests.get(srv.url + "/metrics", timeout=10).text
    found = re.search(r'^pyai_stage_wait_seconds_count\{api="pacifica"\} (\S+)$', text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_post_recalls_a_tape_file(sideband, samdb):
    ident, data = new_id(), os.urandom(2_500_000)
    path = put(sideband, ident, data)
    samdb.record(path, online=False)
    # the recall reads the file: its access time tells (where the mount records access times)
    os.utime(path, (1, path.stat().st_mtime))
    recalls = recalls_read(sideband)
    started = time.monotonic()
    resp = requests.post(sideband.id_url(ident), timeout=10)
    assert time.monotonic() - started < 2
    assert resp.status_code == 202
    assert resp.json() == {"message": "File is being staged", "file": ident}
    # HEAD never recalls and answers from the database
    assert head(sideband, ident).headers["X-Pacifica-File-Storage-Media"] == "tape"
    if records_access_times(path.parent):
        assert wait_until(lambda: path.stat().st_atime > 1, timeout=10), "POST did not read the file"
    # 202 until the database says online, also once the recall has read the whole file
    assert wait_until(lambda: recalls_read(sideband) == recalls + 1, timeout=10)
    assert requests.post(sideband.id_url(ident), timeout=10).status_code == 202
    samdb.set_online(path, True)
    resp = requests.post(sideband.id_url(ident), timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"message": "File was staged", "file": ident}
    assert requests.get(sideband.id_url(ident), timeout=30).content == data


def test_post_on_disk_unknown_and_missing(sideband, samdb):
    ident = new_id()
    path = put(sideband, ident, b"on disk")
    resp = requests.post(sideband.id_url(ident), timeout=10)  # not in the database yet: on disk
    assert resp.status_code == 200 and resp.json() == {"message": "File was staged", "file": ident}
    samdb.record(path, online=True)
    assert requests.post(sideband.id_url(ident), timeout=10).status_code == 200
    assert_error(requests.post(sideband.id_url(new_id()), timeout=10), 404, sideband.prefix)


def original_headers(size, online, mtime, ctime, path):
    """The HEAD headers the original sends for a file the database knows (its status.py rules)."""
    per_level = (size,) if online else (0, size)
    return {
        "X-Pacifica-Messsage": "File was found",
        "X-Pacifica-File": str(path),
        "X-Content-Length": str(size),
        "Last-Modified": repr(float(mtime)),
        "X-Pacifica-Ctime": repr(float(ctime)),
        "X-Pacifica-Bytes-Per-Level": repr(per_level),
        "X-Pacifica-File-Storage-Media": "disk" if per_level[0] == size else "tape",
    }


def test_the_originals_example_configuration(sideband_pool, mariadb):
    """sam_qfs_prefix = /tmp/path (the original's documented example) with the files elsewhere:
    HEAD, GET and POST of an online and an offline file find the rows the original's query finds."""
    srv = sideband_pool.start("example", PAI_SAM_QFS_PREFIX="/tmp/path")
    samdb = SamDB(mariadb, {srv.prefix: "/tmp/path"})
    online_id, offline_id = new_id(), new_id()
    online = put(srv, online_id, b"o" * 3000)
    offline = put(srv, offline_id, b"t" * 4000)
    samdb.record(online, online=True, mtime=1_600_000_000, ctime=1_600_000_100)
    samdb.record(offline, online=False, mtime=1_500_000_000, ctime=1_500_000_100)
    # the rows lie where the original looks: dirname(join(sam_qfs_prefix, id2filename)) + "/", basename
    rows = samdb.rows()
    for ident in (online_id, offline_id):
        directory, name = posixpath.split(posixpath.join("/tmp/path", id2filename(int(ident)).lstrip("/")))
        assert (directory + "/", name) in rows
    for path, ident, size, is_online, mtime, ctime in (
        (online, online_id, 3000, True, 1_600_000_000, 1_600_000_100),
        (offline, offline_id, 4000, False, 1_500_000_000, 1_500_000_100),
    ):
        resp = head(srv, ident)
        assert resp.status_code == 204
        for name, value in original_headers(size, is_online, mtime, ctime, path).items():
            assert resp.headers[name] == value, (ident, name, resp.headers)
    assert requests.post(srv.id_url(online_id), timeout=10).json() == {"message": "File was staged", "file": online_id}
    resp = requests.post(srv.id_url(offline_id), timeout=10)
    assert resp.status_code == 202 and resp.json() == {"message": "File is being staged", "file": offline_id}
    assert requests.get(srv.id_url(online_id), timeout=30).content == b"o" * 3000
    assert requests.get(srv.id_url(offline_id), timeout=30).content == b"t" * 4000  # the read stages it
    samdb.set_online(offline, True)
    assert requests.post(srv.id_url(offline_id), timeout=10).status_code == 200
    assert head(srv, offline_id).headers["X-Pacifica-Bytes-Per-Level"] == "(4000,)"


def test_a_sam_qfs_prefix_unrelated_to_the_prefix(sideband_pool, mariadb):
    """The prefix need not lie under sam_qfs_prefix (pyai once refused to start then): the
    database's name of the archive directory and this host's mount are independent."""
    elsewhere = f"/hsm/fs{secrets.token_hex(3)}/archive"
    srv = sideband_pool.start("unrelated", PAI_SAM_QFS_PREFIX=elsewhere)
    samdb = SamDB(mariadb, {srv.prefix: elsewhere})
    ident = "12345"
    path = put(srv, ident, b"x" * 10)
    samdb.record(path, online=False)
    assert (f"{elsewhere}/39/", "3039") in samdb.rows()
    h = head(srv, ident).headers
    assert h["X-Pacifica-File-Storage-Media"] == "tape" and h["X-Pacifica-Bytes-Per-Level"] == "(0, 10)"


def test_an_empty_file_offline_is_on_disk(sideband, samdb):
    """As the original: the medium is the level holding the whole file, so an empty file is
    "disk" even when the database says offline (there is nothing to recall)."""
    ident = new_id()
    path = put(sideband, ident, b"")
    samdb.record(path, online=False)
    h = head(sideband, ident).headers
    assert h["X-Pacifica-Bytes-Per-Level"] == "(0, 0)" and h["X-Pacifica-File-Storage-Media"] == "disk"
    assert requests.post(sideband.id_url(ident), timeout=10).status_code == 200
