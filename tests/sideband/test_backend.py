"""The hsmsideband backend in this process: the database path rule, the HEAD query plan, failing fast."""

import os
import time

import pytest
from server import free_port

from pyai.archive.ids import InvalidId, id2filename
from pyai.backends.sideband import HEAD_SQL, SidebandBackend, _head_parameters
from pyai.config import load
from pyai.errors import BackendUnavailable, ConfigError

from .mariadb import SamDB


def make_backend(mariadb, sam_qfs_prefix, prefix, **env):
    environ = {
        "PAI_BACKEND_TYPE": "hsmsideband",
        "PAI_PREFIX": str(prefix),
        "PAI_SAM_QFS_PREFIX": str(sam_qfs_prefix),
        "HOME": str(prefix),
        **mariadb.settings(),
        **env,
    }
    return SidebandBackend(load(environ=environ))


@pytest.fixture
def mount(tmp_path):
    path = tmp_path / "sam1"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    "sam_qfs_prefix, ident, expected",
    [
        # the original's documented example: sam_qfs_prefix = /tmp/path
        ("/tmp/path", "12345", ("/tmp/path/39/", "3039")),
        ("/tmp/path/", "12345", ("/tmp/path/39/", "3039")),
        ("/tmp/path", "255", ("/tmp/path/", "file.ff")),
        ("/tmp/path", "1", ("/tmp/path/", "file.1")),
        ("/tmp/path", "305419896", ("/tmp/path/78/56/34/", "12345678")),
        ("/tmp/path", "32768", ("/tmp/path/00/", "8000")),
        ("/", "12345", ("/39/", "3039")),
        ("archive", "12345", ("archive/39/", "3039")),  # a relative one is joined as is, as the original did
    ],
)
def test_database_path_rule(mariadb, tmp_path, sam_qfs_prefix, ident, expected):
    """The original's rule: join(sam_qfs_prefix, id2filename(id) without its "/"), split at the last "/"."""
    prefix = tmp_path / "srv" / "archive"  # where the files are here has nothing to do with it
    backend = make_backend(mariadb, sam_qfs_prefix, prefix)
    path = backend.path_for(ident)
    assert path == os.path.realpath(prefix) + id2filename(int(ident))
    assert backend.sam_location(path) == expected


def test_ids_are_integers(mariadb, mount):
    backend = make_backend(mariadb, mount, mount / "archive", PAI_USE_ID2FILENAME="false")
    assert backend.path_for("4660").endswith("/archive/34/1234")
    with pytest.raises(InvalidId):
        backend.path_for("name.txt")


def test_head_query_uses_the_indexes(mariadb, mount):
    """One joined query per HEAD, every table read through an index (never a full scan)."""
    prefix = mount / "archive"
    samdb = SamDB(mariadb, {prefix: "/sam1/archive"})
    backend = make_backend(mariadb, "/sam1/archive", prefix)
    paths = []
    for ident in range(4096, 4096 + 300, 7):
        path = backend.path_for(str(ident))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"x" * (ident % 50))
        samdb.record(path, online=bool(ident % 2))
        paths.append(path)
    db = mariadb.root("samdb")
    try:
        db.execute_sql("ANALYZE TABLE sam_path, sam_file, sam_inode").fetchall()
        cursor = db.execute_sql("EXPLAIN " + HEAD_SQL, _head_parameters(*backend.sam_location(paths[5])))
        columns = [c[0] for c in cursor.description]
        plan = [dict(zip(columns, row)) for row in cursor.fetchall()]
    finally:
        db.close()
    assert {row["table"] for row in plan} == {"t1", "t2", "t3"}, plan
    for row in plan:
        assert row["type"] not in ("ALL", "index"), plan
        assert row["key"], plan
    # and the answers are right
    for path in paths:
        status = backend.status(path)
        size = os.path.getsize(path)
        ident = int(os.path.basename(path), 16)
        assert (status.size, status.media) == (size, "disk" if ident % 2 or not size else "tape")  # empty: disk


def test_unreachable_database_fails_fast(mariadb, mount):
    """Nothing listens on the port: start-up goes on, HEAD is 503 at once, and again without a new try."""
    prefix = mount / "archive"
    backend = make_backend(mariadb, mount, prefix, PAI_SIDEBAND_PORT=str(free_port()), PAI_SIDEBAND_RETRY_AFTER="3")
    path = backend.path_for("12345")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(b"data")
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            backend.status(path)
        assert time.monotonic() - started < 1.5
        assert "the sideband database is unavailable" in info.value.message
        assert info.value.retry_after == 3
    # what needs no database still works
    assert backend.exists(path) and backend.status(backend.path_for("99999")) is None


@pytest.mark.parametrize("setting", ["PAI_SIDEBAND_CONNECT_TIMEOUT", "PAI_SIDEBAND_QUERY_TIMEOUT"])
def test_zero_timeouts_are_refused(mariadb, mount, setting):
    with pytest.raises(ConfigError, match="must be more than 0"):
        make_backend(mariadb, mount, mount / "archive", **{setting: "0"})


def test_wrong_password_in_process(mariadb, mount):
    with pytest.raises(ConfigError) as info:
        make_backend(mariadb, mount, mount / "archive", PAI_SIDEBAND_PASSWORD="nope")
    assert "refused user 'pyai' (access denied)" in str(info.value)


def test_rows_are_joined_on_ino_as_the_original_joins_them(mariadb, mount):
    """The original joins sam_path.ino = sam_file.p_ino and sam_file.ino = sam_inode.ino:
    an entry whose generation differs from its inode row's is still found; where an old
    generation's inode row is left beside the current one, the entry's own is taken."""
    prefix = mount / "archive"
    samdb = SamDB(mariadb, {prefix: "/gens/archive"})
    backend = make_backend(mariadb, "/gens/archive", prefix)
    paths = [backend.path_for(str(ident)) for ident in (70001, 70002)]
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"y" * 7)
    ino_a, _ = samdb.record(paths[0], online=False)
    ino_b, gen_b = samdb.record(paths[1], online=True)
    db = mariadb.root("samdb")
    try:
        # a: the entry says generation 5, the inode row 1 (pyai's (ino, gen) join missed it)
        db.execute_sql("UPDATE sam_file SET gen = 5 WHERE ino = %s", (ino_a,))
        # b: another generation of its inode, offline, left beside the current one
        db.execute_sql(
            "INSERT INTO sam_inode (ino, gen, type, size, create_time, modify_time, online, uid, gid)"
            " VALUES (%s, %s, 0, 99, 0, 0, 0, 0, 0)",
            (ino_b, gen_b - 1 if gen_b > 1 else gen_b + 1),
        )
    finally:
        db.close()
    assert backend.status(paths[0]).media == "tape"
    status = backend.status(paths[1])
    assert (status.media, status.size) == ("disk", 7)
