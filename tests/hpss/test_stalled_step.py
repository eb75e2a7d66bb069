"""A worker serves with one thread at a time; a thread that blocks lets another serve.

The HPSS emulator's core-server ping is made to take seconds, and a readiness
probe (which pings) holds one thread of a one-worker server that long.  Other
clients are still answered meanwhile, by another thread the worker gives a turn
(the hpss backend's requests pass their turn on at once, see pyai.serving.may_block;
a step stalled any other way is passed over after pyai.server.worker.STALL, which
tests/unit/test_server_turns.py checks).
"""

import json
import select
import socket

import pytest
import requests
from emulator import emu_cli
from faults.procs import server_end
from server import wait_until

PING = 3.0  # seconds the core server takes to answer a ping
TIMEOUT = 15


@pytest.fixture
def slow_core(fresh_hpss):
    srv = fresh_hpss.start("stall", PAI_WORKERS="1", PAI_THREADS="2", PAI_HPSS_ACCEPT_LATENCY="60")
    emu_cli(srv.prefix, "set-latency", str(PING))
    yield srv
    emu_cli(srv.prefix, "set-latency", "0")


def worker_has_read(sock):
    """Whether a worker has accepted ``sock``'s connection and read all it was sent."""
    end = server_end(sock)
    return end is not None and end.inode != 0 and end.rx_queue == 0


def test_a_stalled_step_does_not_hold_the_other_clients(slow_core):
    probe = socket.create_connection(("127.0.0.1", slow_core.port), timeout=TIMEOUT)
    try:
        probe.sendall(b"GET /readyz HTTP/1.1\r\nHost: pyai\r\n\r\n")
        # The probe's ping takes PING seconds; its request reaches the worker first (the worker has
        # taken it from the socket), and still the other client must be answered before it.
        assert wait_until(lambda: worker_has_read(probe), timeout=TIMEOUT)
        resp = requests.get(f"http://127.0.0.1:{slow_core.port}/", timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        assert not select.select([probe], [], [], 0)[0], "the probe was answered first: nothing was stalled"
        probe.settimeout(TIMEOUT)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = probe.recv(65536)
            assert data, answer
            answer += data
    finally:
        probe.close()
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body)["checks"]["hpss"]["seconds"] >= PING - 0.5
