"""Defect 7 and 8: what the start-up sweep removes, and that it never stops a start.

The sweep leaves temporary files younger than ``sweep_min_age`` alone (a
slow upload on a file system without working locks, or one between creating
and locking its file), removes older unlocked ones, and files or directories
that vanish while it walks are not errors.
"""

import os
import shutil
import threading
import time

import requests
from server import wait_until

from pyai.backends import tree
from pyai.backends.posix import PosixBackend
from pyai.config import load as load_config


def test_young_temp_file_survives_a_start_old_one_goes(fresh_server, tmp_path):
    prefix = tmp_path / "age-prefix"
    (prefix / "39").mkdir(parents=True)
    young = prefix / ".pyai-tmp-young"
    young.write_bytes(b"someone may still be writing this")
    old = prefix / "39" / ".pyai-tmp-old"
    old.write_bytes(b"left by a crash an hour ago")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    srv = fresh_server.start("age", PAI_PREFIX=str(prefix))
    assert wait_until(lambda: not old.exists(), timeout=15), list(prefix.rglob("*"))
    assert young.read_bytes() == b"someone may still be writing this"
    assert requests.get(srv.id_url("x"), timeout=10).status_code == 404  # it serves


ROUNDS = 500  # of the churn below: each makes 20 temporary files in a directory, then removes it


def test_sweep_tolerates_files_and_directories_vanishing(tmp_path, monkeypatch):
    """A sweep walks while another process removes what it walks (a second sweep,
    an operator's rm -r): it must finish every time, never raise."""
    prefix = tmp_path / "churn"
    prefix.mkdir()
    config = load_config({"backend": "posix", "prefix": str(prefix), "sweep_min_age": 0}, environ={}, prepare=False)
    backend = PosixBackend(config)

    # At the worst moment, every time: what a listing names is gone before the sweep gets to it.
    for n in range(3):
        (prefix / f"d{n}").mkdir()
        (prefix / f"d{n}" / ".pyai-tmp-below").write_bytes(b"x")
        (prefix / f".pyai-tmp-{n}").write_bytes(b"x")
    list_local, listings = tree.list_local, []

    def vanishing(directory):
        listings.append(directory)
        entries = list(list_local(directory))
        for entry in entries:
            (shutil.rmtree if entry.is_dir else os.unlink)(entry.path)
        return entries

    monkeypatch.setattr(tree, "list_local", vanishing)
    assert backend.sweep() == 0
    # the prefix was listed (three files, three directories, all gone at once), then each directory
    assert sorted(listings) == sorted([str(prefix), *(str(prefix / f"d{n}") for n in range(3))])
    monkeypatch.undo()

    # And at every moment between: two sweeps run over and over while another thread churns.
    start = threading.Barrier(3)
    done = threading.Event()
    failures, sweeps = [], [0, 0]

    def churn():
        start.wait()
        try:
            for n in range(ROUNDS):
                directory = prefix / f"d{n % 7}"
                directory.mkdir(exist_ok=True)
                for i in range(20):
                    (directory / f".pyai-tmp-{n}-{i}").write_bytes(b"x")
                shutil.rmtree(directory, ignore_errors=True)
        finally:
            done.set()

    def sweep(k):
        start.wait()
        while not done.is_set():
            try:
                backend.sweep()
            except Exception as exc:  # noqa: BLE001 - what we look for
                failures.append(repr(exc))
            sweeps[k] += 1

    threads = [threading.Thread(target=churn), *(threading.Thread(target=sweep, args=(k,)) for k in range(2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, f"{len(failures)} sweeps raised: {failures[:3]}"
    assert all(sweeps), sweeps  # both swept while the churn ran
