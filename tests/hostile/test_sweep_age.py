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


def test_sweep_tolerates_files_and_directories_vanishing(tmp_path):
    """A sweep walks while another process removes what it walks (a second sweep,
    an operator's rm -r): it must finish every time, never raise."""
    prefix = tmp_path / "churn"
    prefix.mkdir()
    config = load_config({"backend": "posix", "prefix": str(prefix), "sweep_min_age": 0}, environ={}, prepare=False)
    backend = PosixBackend(config)
    done = threading.Event()
    failures = []

    def churn():
        n = 0
        while not done.is_set():
            n += 1
            directory = prefix / f"d{n % 7}"
            directory.mkdir(exist_ok=True)
            for i in range(20):
                (directory / f".pyai-tmp-{n}-{i}").write_bytes(b"x")
            shutil.rmtree(directory, ignore_errors=True)

    def sweep():
        while not done.is_set():
            try:
                backend.sweep()
            except Exception as exc:  # noqa: BLE001 - what we look for
                failures.append(repr(exc))

    threads = [threading.Thread(target=churn), threading.Thread(target=sweep), threading.Thread(target=sweep)]
    for thread in threads:
        thread.start()
    time.sleep(5)  # a bounded race
    done.set()
    for thread in threads:
        thread.join(60)
    assert not failures, f"{len(failures)} sweeps raised: {failures[:3]}"
