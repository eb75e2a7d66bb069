"""Mixed client traffic through one URL: uploads of random bodies, GET and HEAD of what is
stored; every outcome is kept for the test to judge.  Plus a slow upload on a raw socket,
to be surely in flight when an instance dies."""

import hashlib
import os
import random
import secrets
import socket
import threading
from collections import Counter

import requests
from server import parse_response

# 12 kB with its head fits one HAProxy buffer (an upload HAProxy can replay); the rest do not.
SIZES = (0, 1, 4096, 12_000, 70_000, 300_000, 1 << 20, 3 << 20)
TIMEOUT = 60


def new_id():
    """A fresh integer id (valid in every id mode and on every backend)."""
    return str(secrets.randbits(40) | (1 << 40))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Traffic:
    """``threads`` clients, each on its own keep-alive session, until ``stop()``.

    A read (GET, checked by sha256, or HEAD) that fails is tried again up to
    ``read_retries`` times; one that still fails goes to ``read_failures``.  An
    upload is never retried here: a failed one goes to ``failed_uploads`` for the
    test to examine (and retry) afterwards.
    """

    def __init__(self, url, stored, threads=3, read_retries=0, seed=0):
        self.url = url
        self.stored = dict(stored)  # id -> bytes, each answered 201
        self.read_retries = read_retries
        self.read_failures = []  # (method, id, [what each attempt saw])
        self.retried_reads = []  # (method, id, what the failed attempt saw): succeeded when tried again
        self.failed_uploads = {}  # id -> (bytes, what the client saw)
        self.counts = Counter()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(random.Random(seed + i),), daemon=True) for i in range(threads)
        ]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._halt.set()
        for thread in self._threads:
            thread.join(TIMEOUT + 10)
        assert not any(thread.is_alive() for thread in self._threads), "a client thread is stuck"

    def total(self):
        with self._lock:
            return sum(self.counts.values())

    def _client(self, rng):
        with requests.Session() as session:
            while not self._halt.is_set():
                pick = rng.random()
                with self._lock:
                    ident = rng.choice(sorted(self.stored)) if self.stored else None
                if pick < 0.4 or ident is None:
                    self._upload(session, rng)
                else:
                    self._read(session, "GET" if pick < 0.8 else "HEAD", ident)

    def _upload(self, session, rng):
        ident = new_id()
        size = rng.choice(SIZES)
        data = os.urandom(size + (rng.randrange(1000) if size > 1 else 0))
        try:
            resp = session.put(f"{self.url}/{ident}", data=data, timeout=TIMEOUT)
            seen = None if resp.status_code == 201 else f"{resp.status_code} {resp.text[:200]}"
        except requests.RequestException as exc:
            seen = repr(exc)[:300]
        with self._lock:
            self.counts["PUT"] += 1
            if seen is None:
                self.stored[ident] = data
            else:
                self.failed_uploads[ident] = (data, seen)

    def _read(self, session, method, ident):
        with self._lock:
            data = self.stored[ident]
        attempts = []
        for _ in range(1 + self.read_retries):
            seen = self._read_once(session, method, ident, data)
            if seen is None:
                break
            attempts.append(seen)
        with self._lock:
            self.counts[method] += 1
            if len(attempts) > self.read_retries:
                self.read_failures.append((method, ident, attempts))
            elif attempts:
                self.retried_reads.append((method, ident, attempts[0]))

    def _read_once(self, session, method, ident, data):
        """None when the answer is right, else what was wrong."""
        try:
            if method == "HEAD":
                resp = session.head(f"{self.url}/{ident}", timeout=TIMEOUT)
                return None if resp.status_code == 204 else f"HEAD {resp.status_code}"
            resp = session.get(f"{self.url}/{ident}", timeout=TIMEOUT)
        except requests.RequestException as exc:
            return repr(exc)[:300]
        if resp.status_code != 200:
            return f"GET {resp.status_code} {resp.text[:200]}"
        if sha256(resp.content) != sha256(data):
            return f"GET 200 with other bytes ({len(resp.content)} of {len(data)})"
        return None


class SlowUpload:
    """A PUT sent in two parts on a raw socket: ``begin`` sends the head and a first part
    (the upload is then in flight on whichever instance HAProxy picked), ``finish`` the rest."""

    def __init__(self, port, size=4 << 20, first=256 << 10):
        self.port = port
        self.ident = new_id()
        self.data = os.urandom(size)
        self.first = first
        self.sock = None

    def begin(self):
        head = (
            f"PUT /{self.ident} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Length: {len(self.data)}\r\n\r\n"
        ).encode()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        self.sock.sendall(head + self.data[: self.first])

    def finish(self):
        """The status of the answer, or None when the connection ended without one."""
        try:
            try:
                self.sock.sendall(self.data[self.first :])
            except OSError:
                pass  # the answer (a 502) may have come, and the connection gone, before the body was all sent
            chunks = []
            while True:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            answer = b"".join(chunks)
            return parse_response(answer).status if answer else None
        finally:
            self.sock.close()


class SlowDownload:
    """A GET read slowly on a raw socket with a small receive buffer: ``begin`` reads the
    head and a first part (the instance is then parked on a full socket, the file open),
    ``finish`` the rest; whether the body came whole and exact."""

    def __init__(self, port, ident, data, first=64 << 10):
        self.port = port
        self.ident = ident
        self.data = data
        self.first = first
        self.received = b""
        self.sock = None

    def begin(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)  # before connect: a small window
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", self.port))
        self.sock.sendall(f"GET /{self.ident} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        while len(self.received) < self.first:
            data = self.sock.recv(65536)
            assert data, f"GET /{self.ident} ended after {len(self.received)} bytes"
            self.received += data

    def finish(self):
        try:
            while True:
                try:
                    data = self.sock.recv(1 << 20)
                except OSError:
                    break
                if not data:
                    break
                self.received += data
        finally:
            self.sock.close()
        answer = parse_response(self.received)
        return answer.status == 200 and sha256(answer.body) == sha256(self.data)
