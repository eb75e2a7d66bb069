"""Defect 7: the sweep must never remove the temporary file of a live upload.

A temporary file used to be created under its sweepable name and only then
locked, so a sweep (``pacifica-archiveinterface-cmd sweep`` on a live archive,
or another instance starting) could take it in between: that PUT answered 500.
Here the real server receives many small PUTs while sweeps of the same prefix
run all the time, with the age rule off (``sweep_min_age`` 0) so only the lock
protects the uploads.  Every PUT must be 201, every file read back exact, and
no sweep may fail.
"""

import hashlib
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from server import service_env

from pyai.backends.posix import PosixBackend
from pyai.config import load as load_config

THREADS = 12
PUTS_PER_THREAD = 150  # 1,800 PUTs
CMD = Path(sys.executable).parent / "pacifica-archiveinterface-cmd"


def _put_many(srv, n):
    stored = {}
    with requests.Session() as session:
        for i in range(PUTS_PER_THREAD):
            ident = f"race-{n}-{i}"
            data = os.urandom(1 + (i * 37 + n) % 3000)
            resp = session.put(srv.id_url(ident), data=data, timeout=60)
            stored[ident] = (resp.status_code, resp.text[:300], hashlib.sha256(data).hexdigest())
    return stored


def _sweep_in_process(prefix, done, failures):
    """The sweep as the server's start-up runs it, as fast as it goes."""
    config = load_config({"backend": "posix", "prefix": str(prefix), "sweep_min_age": 0}, environ={}, prepare=False)
    backend = PosixBackend(config)
    while not done.is_set():
        try:
            backend.sweep()
        except Exception as exc:  # noqa: BLE001 - any failure of the sweep is what we look for
            failures.append(repr(exc))


def _sweep_with_the_command(srv, done, failures):
    """The operator's command against the live archive, again and again."""
    env = service_env(srv.workdir, PAI_SWEEP_MIN_AGE=0)
    runs = 0
    while not done.is_set() or runs == 0:
        proc = subprocess.run(
            [str(CMD), "--prefix", str(srv.prefix), "sweep"], env=env, capture_output=True, timeout=120
        )
        runs += 1
        if proc.returncode != 0:
            failures.append(f"exit {proc.returncode}: {proc.stderr[-500:]!r}")
    return runs


def test_sweeps_never_take_live_uploads(make_server):
    srv = make_server("sweep-race")
    done = threading.Event()
    failures = []
    sweepers = [
        threading.Thread(target=_sweep_in_process, args=(srv.prefix, done, failures)),
        threading.Thread(target=_sweep_with_the_command, args=(srv, done, failures)),
    ]
    for thread in sweepers:
        thread.start()
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(lambda n: _put_many(srv, n), range(THREADS)))
    finally:
        done.set()
        for thread in sweepers:
            thread.join(180)
    answers = {ident: r for result in results for ident, r in result.items()}
    bad = {ident: r[:2] for ident, r in answers.items() if r[0] != 201}
    assert not bad, f"{len(bad)} of {len(answers)} PUTs failed while sweeps ran: {list(bad.items())[:5]}"
    assert not failures, f"{len(failures)} sweeps failed: {failures[:3]}"
    with requests.Session() as session:
        for ident, (_, _, digest) in answers.items():
            resp = session.get(srv.id_url(ident), timeout=60)
            assert resp.status_code == 200, (ident, resp.status_code)
            assert hashlib.sha256(resp.content).hexdigest() == digest, ident
    assert srv.temp_files() == []
