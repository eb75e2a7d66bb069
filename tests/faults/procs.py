"""A running gunicorn as /proc shows it: its workers, their memory and descriptors, and its connections
(who holds one, what waits in it, whether the server has closed it).

The plain /proc readers are ``harness``'s (re-exported here for the tests that import them from here).
"""

import socket
import time
from typing import NamedTuple

from harness import children, cpu_seconds, fd_count, fd_targets, rss_kib, status_value  # noqa: F401

# The servers of the fault tests run two workers, so a test can kill one while the other keeps
# serving, and the pids it records before and after a fault are all the workers there are.
WORKERS = 2


def workers(srv, count, timeout=60.0):
    """The pids of the ``count`` workers of ``srv`` once every one of them serves.

    A forked worker still has to load the app; it accepts connections only
    after that, so a worker seen holding an answered connection has booted.
    """
    deadline = time.monotonic() + timeout
    serving = set()
    while True:
        pids = children(srv.proc.pid)
        serving &= set(pids)
        if len(pids) == count and serving == set(pids):
            return pids
        assert time.monotonic() < deadline, (
            f"master {srv.proc.pid} has workers {pids} ({serving} serving), expected {count}"
        )
        socks = [connect(srv.port) for _ in range(2 * count)]
        try:
            for sock in socks:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for sock in socks:
                sock.recv(65536)  # answered: the connection is kept alive by the worker that answered
                serving.add(holder_of(sock, pids))
        finally:
            for sock in socks:
                sock.close()
        time.sleep(0.05)


# /proc/net/tcp's states that matter here (hex, as it prints them)
ESTABLISHED, SYN_RECV, CLOSE_WAIT, LISTEN = "01", "03", "08", "0A"


class TcpEnd(NamedTuple):
    """One end of a loopback TCP connection (or a listener) as /proc/net/tcp shows it."""

    local_port: int
    remote_port: int
    state: str
    tx_queue: int  # bytes written and not yet acknowledged by the peer
    rx_queue: int  # bytes received and not yet read
    inode: int  # 0 once no process holds the socket (still in the accept queue, or closed and lingering)


def tcp_ends():
    """Every IPv4 TCP socket on 127.0.0.1."""
    ends = []
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            (address, local), (_, remote) = (part.split(":") for part in fields[1:3])
            if address != "0100007F":
                continue
            tx_queue, rx_queue = (int(n, 16) for n in fields[4].split(":"))
            ends.append(TcpEnd(int(local, 16), int(remote, 16), fields[3], tx_queue, rx_queue, int(fields[9])))
    return ends


def _end(local_port, remote_port):
    found = [e for e in tcp_ends() if (e.local_port, e.remote_port) == (local_port, remote_port)]
    return found[0] if found else None


def server_end(sock):
    """The server's end of the client socket ``sock``'s connection (None once it is gone altogether)."""
    return _end(sock.getpeername()[1], sock.getsockname()[1])


def client_end(sock):
    """The client socket ``sock`` itself as the kernel sees it."""
    return _end(sock.getsockname()[1], sock.getpeername()[1])


def server_closed(sock):
    """Whether the server has closed its end of ``sock``'s connection: it is gone, or past the close
    (FIN_WAIT, TIME_WAIT...).  Not its holder alone: an end still in the accept queue has none either."""
    end = server_end(sock)
    return end is None or end.state not in (SYN_RECV, ESTABLISHED, CLOSE_WAIT)


def listener(port):
    """``socket:[inode]``, what a descriptor of the socket listening on ``port`` links to (None: nothing listens)."""
    found = [e.inode for e in tcp_ends() if e.local_port == port and e.state == LISTEN]
    return f"socket:[{found[0]}]" if found else None


def open_connections(port):
    """The connections to ``port`` the server has not closed yet: waiting to be accepted, or held by a process."""
    return [
        e
        for e in tcp_ends()
        if e.local_port == port and e.state != LISTEN and (e.inode or e.state in (ESTABLISHED, CLOSE_WAIT))
    ]


def holder_of(sock, pids):
    """Which of ``pids`` holds the server end of the client socket ``sock`` (None: none does)."""
    end = server_end(sock)
    if end is None or not end.inode:
        return None
    return next((pid for pid, target in fd_targets(pids) if target == f"socket:[{end.inode}]"), None)


def connect(port, timeout=30.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)
