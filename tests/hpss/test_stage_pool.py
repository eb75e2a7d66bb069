"""Defect 8: stages run on a bounded pool of threads per worker, not one thread per file.

Many distinct files on tape are asked for at once (POST); the worker's thread
count must stay within its request threads plus ``stage_workers``, and every
file must still end up on disk.
"""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from emulator import emu_cli
from faults.procs import children, status_value
from server import wait_until

FILES = 40
STAGE_WORKERS = 3
REQUEST_THREADS = 4  # the worker may still start this many request threads during the POSTs


def _worker_pid(srv):
    kids = children(srv.proc.pid)
    assert len(kids) == 1, kids
    return kids[0]


def _media(srv, ident):
    return requests.head(srv.id_url(ident), timeout=10).headers["X-Pacifica-File-Storage-Media"]


def test_many_stages_use_a_bounded_pool(fresh_hpss):
    srv = fresh_hpss.start(
        "pool",
        PAI_WORKERS="1",
        PAI_THREADS=str(REQUEST_THREADS),
        PAI_STAGE_WORKERS=str(STAGE_WORKERS),
        PAI_HPSS_PING_INTERVAL="0",
    )
    emu_cli(srv.prefix, "set-stage-delay", "1.5")
    idents = [str(secrets.randbits(40) | (1 << 41)) for _ in range(FILES)]
    for ident in idents:
        assert requests.put(srv.id_url(ident), data=ident.encode() * 100, timeout=30).status_code == 201
    emu_cli(srv.prefix, "purge", *idents)
    assert all(_media(srv, ident) == "tape" for ident in idents)
    pid = _worker_pid(srv)
    with ThreadPoolExecutor(FILES) as pool:  # every request thread of the worker busy once
        list(pool.map(lambda ident: _media(srv, ident), idents))
    baseline = status_value(pid, "Threads")

    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], status_value(pid, "Threads"))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(FILES) as pool:
            codes = list(pool.map(lambda ident: requests.post(srv.id_url(ident), timeout=30).status_code, idents))
        assert set(codes) <= {200, 202}, codes
        assert wait_until(lambda: all(_media(srv, ident) == "disk" for ident in idents), timeout=120), [
            _media(srv, ident) for ident in idents
        ]
    finally:
        done.set()
        sampler.join()
    assert peak[0] <= baseline + STAGE_WORKERS + REQUEST_THREADS, (
        f"{peak[0]} threads at the peak, {baseline} before the stages"
    )
    for ident in idents:
        assert requests.get(srv.id_url(ident), timeout=30).content == ident.encode() * 100
