"""A running gunicorn as /proc shows it: its workers, their memory and descriptors, who holds a connection."""

import os
import socket

from server import wait_until


def children(pid):
    """The pids whose parent is ``pid``, sorted."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue  # it exited while we looked
        # the command name may hold spaces and parentheses: the fields start after the last ")"
        state_and_ppid = stat.rpartition(")")[2].split()
        if int(state_and_ppid[1]) == pid:
            kids.append(int(entry))
    return sorted(kids)


def workers(srv, count, timeout=60.0):
    """The worker pids of ``srv`` once it has ``count`` of them (the master respawns dead ones)."""
    found = wait_until(lambda: len(children(srv.proc.pid)) == count, timeout=timeout)
    assert found, f"master {srv.proc.pid} has workers {children(srv.proc.pid)}, expected {count}"
    return children(srv.proc.pid)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


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
