"""Durable small PUTs with shared flushes: every method stores every byte, under load, through gunicorn.

``journal`` needs ext4 with a journal: as root it runs on a loop-mounted ext4
image under /var/tmp (this machine's root ext4 has none); elsewhere it is skipped.
"""

import os
import random
import secrets
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

THREADS = 8
PUTS_PER_THREAD = 500


@pytest.fixture(scope="module")
def journaled_ext4():
    """A directory on a freshly made, loop-mounted ext4 with a journal; unmounted and removed after."""
    if os.geteuid() != 0:
        pytest.skip("a loop-mounted ext4 with a journal needs root (mount -o loop)")
    if not (shutil.which("mkfs.ext4") and shutil.which("mount") and shutil.which("umount")):
        pytest.skip("mkfs.ext4, mount and umount are needed for a loop-mounted ext4")
    base = Path(tempfile.mkdtemp(prefix="pyai-group-commit-", dir="/var/tmp"))
    image, mount_point = base / "ext4.img", base / "mnt"
    mount_point.mkdir()
    mounted = False
    try:
        with open(image, "wb") as handle:
            handle.truncate(1 << 30)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        result = subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image here: {result.stderr.strip()}")
        mounted = True
        jbd2 = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
        assert jbd2, "the loop-mounted ext4 has no jbd2 journal"
        yield mount_point
    finally:
        if mounted:
            if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def put_many(srv):
    """THREADS keep-alive sessions, PUTS_PER_THREAD new ids each; {id: bytes} of what they stored."""
    tag = secrets.token_hex(4)

    def worker(n):
        rng = random.Random(f"{tag}-{n}")
        stored = {}
        with requests.Session() as session:
            for i in range(PUTS_PER_THREAD):
                ident = f"gc-{tag}-{n}-{i}"
                data = rng.randbytes(rng.randint(30, 4096))
                resp = session.put(srv.id_url(ident), data=data, timeout=60)
                assert resp.status_code == 201, (ident, resp.status_code, resp.text[:300])
                stored[ident] = data
        return stored

    with ThreadPoolExecutor(THREADS) as executor:
        results = list(executor.map(worker, range(THREADS)))
    return {k: v for r in results for k, v in r.items()}


def check_stored(srv, stored):
    assert len(stored) == THREADS * PUTS_PER_THREAD
    for ident, data in stored.items():  # straight from the prefix
        assert srv.stored_path(ident).read_bytes() == data, ident
    with requests.Session() as session:
        for ident, data in stored.items():
            resp = session.get(srv.id_url(ident), timeout=30)
            assert resp.status_code == 200 and resp.content == data, ident
    assert srv.temp_files() == []


def run_method(pool, method, prefix, expect):
    srv = pool.start(f"gc-{method}", prefix=str(prefix), PAI_PREFIX=str(prefix), PAI_DURABILITY=method)
    assert f"durability of uploads under {os.path.realpath(prefix)}: {expect} (" in srv.log()
    check_stored(srv, put_many(srv))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fsync", "syncfs"])
def test_small_puts_on_the_root_file_system(pool, tmp_path, method):
    run_method(pool, method, tmp_path / "prefix", method)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["journal", "syncfs"])
def test_small_puts_on_ext4_with_a_journal(pool, journaled_ext4, method):
    run_method(pool, method, journaled_ext4 / f"prefix-{method}", method)


def test_auto_is_journal_on_ext4_with_a_journal_and_fsync_on_the_root(pool, journaled_ext4, tmp_path):
    for prefix in (journaled_ext4 / "prefix-auto", tmp_path / "prefix-auto"):
        srv = pool.start("gc-auto", prefix=str(prefix), PAI_PREFIX=str(prefix))  # auto is the default
        expect = "journal" if prefix.is_relative_to(journaled_ext4) else _root_auto()
        assert f"durability of uploads under {os.path.realpath(prefix)}: {expect} (" in srv.log()


def _root_auto():
    """What auto picks for the root file system of this machine (no journal here: fsync)."""
    from pyai.backends.flusher import choose, file_system

    return choose("auto", file_system("/var/tmp")).method


def test_a_forced_journal_where_it_is_unsound_stops_the_start(pool, tmp_path):
    if os.path.isdir("/proc/fs/jbd2") and os.listdir("/proc/fs/jbd2"):
        prefix = Path("/dev/shm") / f"pyai-gc-{secrets.token_hex(4)}"  # tmpfs: never a journal
    else:
        prefix = tmp_path / "prefix"  # this machine's root ext4 has no journal
    try:
        with pytest.raises(RuntimeError):
            pool.start("gc-refused", prefix=str(prefix), PAI_PREFIX=str(prefix), PAI_DURABILITY="journal")
        assert "durability = journal is not sound on" in pool.servers[-1].log()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
