"""One TCP urgent byte (``MSG_OOB``) inside a PUT body, on every receive path.

Linux stops splice(2) at the urgent mark: it answered EAGAIN while poll()
kept saying readable, and the receive spun a core forever.  Each test sends
part of a body, one urgent byte, then either the rest (the answer is 201 and
the stored file is the body without the urgent byte: with SO_OOBINLINE off the
byte is not in the stream, and pyai drops it, as recv() does) or nothing (408
after receive_timeout).  Both are answered in bounded time, and the worker's
CPU time over the wait stays a small part of the wall time.

The paths: C splice (``PAI_CHECKSUM=none``, any size), C tee (sha256,
>= 1 MiB: hashed beside the receive), C recv+hash in line (sha256, < 1 MiB),
and the pure-Python I/O (the ``python`` flavor runs every case through poll+readv).
"""

import os
import socket
import time

import pytest
import requests
from faults.procs import children, cpu_seconds
from server import parse_response, recv_all, wait_until

RECEIVE_TIMEOUT = 2
SLACK = 4  # seconds beyond receive_timeout an answer may take on a busy machine
PAUSE = 1.0  # seconds the client waits after the urgent byte before sending the rest
CPU_SHARE = 0.3  # of the wall time, at most, the worker may burn while a client waits
SMALL, LARGE = 200 * 1024, 3 * 1024 * 1024

# (PAI_CHECKSUM, body size): which receive path of the C I/O it takes
PATHS = {
    "splice-small": ("none", SMALL),
    "splice-large": ("none", LARGE),
    "tee": ("sha256", LARGE),
    "inline-hash": ("sha256", SMALL),
}


@pytest.fixture(scope="module")
def servers(make_server):
    """One single-worker server per checksum setting, started on first use."""
    started = {}

    def get(checksum):
        if checksum not in started:
            started[checksum] = make_server(
                f"urgent-{checksum}", PAI_WORKERS="1", PAI_CHECKSUM=checksum, PAI_RECEIVE_TIMEOUT=str(RECEIVE_TIMEOUT)
            )
        return started[checksum]

    return get


def worker_cpu(srv):
    """Seconds of CPU (user + system) the server's worker processes have used so far."""
    return sum(cpu_seconds(pid) for pid in children(srv.proc.pid))


def head(ident, length):
    return (
        f"PUT /{ident} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def send_with_urgent_byte(srv, ident, body, then_rest):
    """PUT ``body`` with one urgent byte after its first half; return (answer, wall s, worker CPU s)."""
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", srv.port), timeout=RECEIVE_TIMEOUT + PAUSE + SLACK + 5) as sock:
        sock.sendall(head(ident, len(body)))
        assert wait_until(lambda: srv.received() == [0], timeout=10)  # the worker is inside the body's receive
        sock.sendall(body[:half])
        # and has written the first half, so the urgent byte lands in its own read
        assert wait_until(lambda: srv.received() == [half], timeout=10), srv.received()
        cpu, start = worker_cpu(srv), time.monotonic()
        sock.send(b"!", socket.MSG_OOB)
        if then_rest:
            time.sleep(PAUSE)
            sock.sendall(body[half:])
        data = recv_all(sock)
        wall = time.monotonic() - start
    return (parse_response(data) if data else None), wall, worker_cpu(srv) - cpu


@pytest.mark.parametrize("path", list(PATHS))
def test_urgent_byte_then_the_rest_is_stored_without_it(servers, uid, path):
    checksum, size = PATHS[path]
    srv = servers(checksum)
    body = os.urandom(size)
    answer, wall, cpu = send_with_urgent_byte(srv, uid, body, then_rest=True)
    assert answer is not None, f"no answer after {wall:.1f} s"
    assert answer.status == 201, answer
    assert wall < PAUSE + SLACK, f"answered after {wall:.1f} s"
    assert cpu < CPU_SHARE * wall, f"the worker used {cpu:.2f} s of CPU in {wall:.2f} s"
    stored = requests.get(srv.id_url(uid), timeout=30)
    assert stored.status_code == 200
    assert stored.content == body  # the urgent byte is not part of the body


@pytest.mark.parametrize("path", list(PATHS))
def test_urgent_byte_then_silence_is_408(servers, uid, path):
    checksum, size = PATHS[path]
    srv = servers(checksum)
    answer, wall, cpu = send_with_urgent_byte(srv, uid, os.urandom(size), then_rest=False)
    assert answer is not None, f"no answer after {wall:.1f} s"
    assert answer.status == 408, answer
    assert wall < RECEIVE_TIMEOUT + SLACK, f"answered after {wall:.1f} s"
    assert cpu < CPU_SHARE * wall, f"the worker used {cpu:.2f} s of CPU in {wall:.2f} s"
    assert wait_until(lambda: srv.temp_files() == [], timeout=10), srv.temp_files()
    assert requests.head(srv.id_url(uid), timeout=30).status_code == 404
