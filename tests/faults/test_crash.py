"""SIGKILL of the worker that is receiving a large PUT.

The worker dies with the upload half written: nothing may be visible under the
id, the next start sweeps the temporary file, a retry stores the file, and the
files stored before are untouched.
"""

import os
import signal
import time

import pytest
import requests
from server import wait_until

from .checks import assert_absent, assert_intact, sha256, store, store_some
from .procs import WORKERS, connect, holder_of, workers
from .streams import BLOCK, put_head

TOTAL = 64 * 1024 * 1024  # announced; the client sends SENT bytes of it, then the worker dies
SENT = 16 * 1024 * 1024  # more than the hpss backend gathers before its first write (8 MiB)


@pytest.mark.quick
def test_sigkill_of_worker_mid_put(start, backend, new_id):
    srv = start("crash")
    before = store_some(srv, new_id)
    ident = new_id()
    pids = workers(srv, WORKERS)
    sock = connect(srv.port)
    try:
        sock.sendall(put_head(ident, TOTAL))
        block = os.urandom(BLOCK)
        for _ in range(SENT // BLOCK):
            sock.sendall(block)

        # the worker is mid-receive once its temporary file has bytes in it
        def receiving():
            return any(p.stat().st_size > 0 for p in srv.settled_temp_files())

        assert wait_until(receiving, timeout=60), srv.all_files()
        victim = holder_of(sock, pids)
        assert victim is not None, f"no worker of {pids} holds the connection"
        os.kill(victim, signal.SIGKILL)
        assert victim not in workers(srv, WORKERS)
    finally:
        sock.close()

    # The master is up, a new worker serves, and the id holds nothing.
    assert srv.proc.poll() is None
    assert_absent(srv, ident)
    leftovers = srv.temp_files()
    assert leftovers, "the killed upload left no temporary file: the test did not kill it mid-upload"
    assert_intact(srv, before)

    srv.stop()
    # The sweep leaves temporary files younger than sweep_min_age alone (and on
    # HPSS, which has no lock that dies with the process, goes by age only):
    # let the leftover be old.
    old = time.time() - 3600
    for path in leftovers:
        os.utime(path, (old, old))
    again = start("crash-restart", PAI_PREFIX=str(srv.prefix))
    assert again.temp_files() == [], "the start-up sweep left the dead upload's temporary file"

    data = os.urandom(TOTAL // 4)
    store(again, ident, data)
    resp = requests.get(again.id_url(ident), timeout=60)
    assert resp.status_code == 200 and sha256(resp.content) == sha256(data)
    assert_intact(again, before)
    assert again.temp_files() == []
