"""What the tests of the I/O primitives put at the other end: a sender on the socket, and a
hasher that records its updates."""

import hashlib
import socket
import threading
import time


class Sender(threading.Thread):
    """Sends ``parts`` (pausing ``pause`` s before each), then optionally shuts down writing."""

    def __init__(self, sock, *parts, pause=0.0, eof=False):
        super().__init__(daemon=True)
        self.sock, self.parts, self.pause, self.eof = sock, parts, pause, eof
        self.error = None
        self.start()

    def run(self):
        try:
            for part in self.parts:
                time.sleep(self.pause)
                self.sock.sendall(part)
            if self.eof:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # reported by finish(), not as a thread exception
            self.error = exc

    def finish(self):
        self.join(20)
        assert not self.is_alive() and self.error is None


class CountingHasher:
    """A sha256 that records the length of every update (the twins must hash the same runs)."""

    def __init__(self):
        self.sha, self.updates = hashlib.sha256(), []

    def update(self, data):
        self.updates.append(len(data))
        self.sha.update(data)
