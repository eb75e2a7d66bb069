"""A running gunicorn as /proc shows it: its workers, their memory and descriptors, who holds a connection.

The plain /proc readers are ``harness``'s (re-exported here for the tests that import them from here).
"""

import os
import socket
import time

from harness import children, cpu_seconds, fd_count, rss_kib, status_value  # noqa: F401

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


def _server_side_inode(server_port, client_port):
    """The inode of the server's end of the loopback TCP connection from ``client_port``."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[9])
    return None


def holder_of(sock, pids):
    """Which of ``pids`` holds the server end of the client socket ``sock`` (None: none does)."""
    inode = _server_side_inode(sock.getpeername()[1], sock.getsockname()[1])
    if not inode:
        return None
    link = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                    return pid
            except OSError:
                continue
    return None


def connect(port, timeout=30.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)
