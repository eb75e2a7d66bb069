"""The hsmsideband backend over HTTP: HEAD from the sideband database rows, file I/O as posix, recalls."""

import concurrent.futures
import os
import secrets
import time

import pytest
import requests
from server import assert_error, wait_until

NOT_FOUND = "File Not Found"


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
    assert resp.headers["X-Pacifica-Messsage"] == "File Not found"
    for name in (
        "X-Pacifica-File",
        "X-Content-Length",
        "Last-Modified",
        "X-Pacifica-Ctime",
        "X-Pacifica-Bytes-Per-Level",
        "X-Pacifica-File-Storage-Media",
    ):
        assert resp.headers[name] == NOT_FOUND


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


def test_post_recalls_a_tape_file(sideband, samdb):
    ident, data = new_id(), os.urandom(2_500_000)
    path = put(sideband, ident, data)
    samdb.record(path, online=False)
    # the recall reads the file: its access time tells (where the mount records access times)
    os.utime(path, (1, path.stat().st_mtime))
    started = time.monotonic()
    resp = requests.post(sideband.id_url(ident), timeout=10)
    assert time.monotonic() - started < 2
    assert resp.status_code == 202
    assert resp.json() == {"message": "File is being staged", "file": ident}
    # HEAD never recalls and answers from the database
    assert head(sideband, ident).headers["X-Pacifica-File-Storage-Media"] == "tape"
    # 202 until the database says online (the recall read is long done here)
    time.sleep(0.3)
    assert requests.post(sideband.id_url(ident), timeout=10).status_code == 202
    if records_access_times(path.parent):
        assert wait_until(lambda: path.stat().st_atime > 1, timeout=10), "POST did not read the file"
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


def test_prefix_below_the_mount_point(sideband_pool, samdb):
    """The database path of a file is its directory relative to sam_qfs_prefix, with a trailing '/'."""
    mount = sideband_pool.mount
    prefix = os.path.join(mount, "deep", f"archive-{secrets.token_hex(3)}")
    srv = sideband_pool.start("deep", PAI_PREFIX=prefix)
    for ident in ("12345", "255", "305419896"):  # /39/3039, /file.ff, /78/56/34/12345678
        path = put(srv, ident, b"x" * 10)
        samdb.record(path, online=False)
        assert head(srv, ident).headers["X-Pacifica-File-Storage-Media"] == "tape", ident
    # the rows are where the rule says
    db = samdb.mariadb.root("samdb")
    try:
        relative = prefix[len(mount) + 1 :]
        rows = db.execute_sql(
            "SELECT p.path, f.name FROM sam_path p JOIN sam_file f ON f.p_ino = p.ino AND f.p_gen = p.gen "
            "WHERE p.path LIKE %s ORDER BY p.path, f.name",
            (relative + "/%",),
        ).fetchall()
    finally:
        db.close()
    assert set(rows) >= {
        (f"{relative}/39/", "3039"),
        (f"{relative}/", "file.ff"),
        (f"{relative}/78/56/34/", "12345678"),
    }


def test_many_heads_from_several_workers(sideband_pool, samdb):
    srv = sideband_pool.start("busy", PAI_WORKERS="3", PAI_THREADS="8")
    files = {}
    for n in range(12):
        ident = new_id()
        path = put(srv, ident, os.urandom(100 + n))
        samdb.record(path, online=bool(n % 2))
        files[ident] = ("disk" if n % 2 else "tape", 100 + n)

    def check(ident):
        h = head(srv, ident).headers
        return h["X-Pacifica-File-Storage-Media"], int(h["X-Content-Length"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        idents = list(files) * 20
        answers = list(pool.map(check, idents))
    assert answers == [files[i] for i in idents]
