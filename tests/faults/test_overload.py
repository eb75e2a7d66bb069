"""Overload: 64 clients at once, large and small transfers mixed, for a bounded time.

Every answer must be right (no errors, every GET byte-exact), the workers must
stay up, their memory flat (a bound for leaks, not a timing) and their file
descriptors back where they were once the clients are gone.
"""

import hashlib
import os
import random
import threading
import time

import pytest
import requests
from server import raw, wait_until

from .checks import sha256, store
from .procs import WORKERS, fd_count, open_connections, rss_kib, workers
from .streams import LAST_CHUNK, chunk

pytestmark = [
    pytest.mark.slow,
    pytest.mark.posix_only("the load is on the receive and send paths of the posix backend"),
]

SECONDS = float(os.environ.get("PYAI_OVERLOAD_SECONDS", "12"))
SESSION_CLIENTS = 56  # threads with a requests session (keep-alive)
RAW_CLIENTS = 8  # threads on raw sockets, one request per connection, chunked uploads
LARGE_CLIENTS = 8  # of the session clients, these move tens of MiB per request
RSS_GROWTH_KIB = 64 * 1024
FD_SLACK = 4


class Load:
    """The shared state of one run: payloads, the deadline, what went wrong."""

    def __init__(self, srv, new_id, large):
        self.srv = srv
        self.new_id = new_id
        self.large = large  # {id: (bytes, sha256)} stored before the run
        self.payloads = [os.urandom(size) for size in (24 << 20, 40 << 20)]
        self.deadline = 0.0
        self.errors = []
        self.requests = 0
        self.lock = threading.Lock()

    def failed(self, what):
        with self.lock:
            self.errors.append(what)

    def count(self):
        with self.lock:
            self.requests += 1

    def run(self, seconds):
        self.deadline = time.monotonic() + seconds
        clients = [
            threading.Thread(target=self.session_client, args=(i < LARGE_CLIENTS,)) for i in range(SESSION_CLIENTS)
        ]
        clients += [threading.Thread(target=self.raw_client) for _ in range(RAW_CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(seconds + 300)
        assert not any(client.is_alive() for client in clients), "a client hung"

    def expect(self, resp, status, what):
        self.count()
        if resp.status_code != status:
            self.failed(f"{what}: {resp.status_code} {resp.text[:200]}")
            return False
        return True

    def session_client(self, large):
        rng = random.Random()
        with requests.Session() as session:
            try:
                while time.monotonic() < self.deadline:
                    if large:
                        self.large_round(session, rng)
                    else:
                        self.small_round(session, rng)
            except Exception as exc:  # noqa: BLE001 - a transport error is a failure of the service too
                self.failed(f"{'large' if large else 'small'} client: {exc!r}")

    def small_round(self, session, rng):
        ident, data = self.new_id(), os.urandom(rng.choice((1, 300, 4096, 70_000, 500_000)))
        url = self.srv.id_url(ident)
        if self.expect(session.put(url, data=data, timeout=120), 201, "small PUT"):
            resp = session.get(url, timeout=120)
            if self.expect(resp, 200, "small GET") and resp.content != data:
                self.failed(f"small GET {ident}: bytes differ")
            self.expect(session.head(url, timeout=120), 204, "HEAD")

    def large_round(self, session, rng):
        if rng.random() < 0.5:  # read a stored large file, hashing as it streams
            ident, (_, digest) = rng.choice(list(self.large.items()))
            with session.get(self.srv.id_url(ident), stream=True, timeout=120) as resp:
                if self.expect(resp, 200, "large GET"):
                    hashed = hashlib.sha256()
                    for block in resp.iter_content(1 << 20):
                        hashed.update(block)
                    if hashed.hexdigest() != digest:
                        self.failed(f"large GET {ident}: bytes differ")
            return
        ident, data = self.new_id(), rng.choice(self.payloads)
        url = self.srv.id_url(ident)
        if self.expect(session.put(url, data=data, timeout=120), 201, "large PUT"):
            with session.get(url, stream=True, timeout=120) as resp:
                if self.expect(resp, 200, "large GET of own PUT"):
                    hashed = hashlib.sha256()
                    for block in resp.iter_content(1 << 20):
                        hashed.update(block)
                    if hashed.hexdigest() != sha256(data):
                        self.failed(f"large GET {ident}: bytes differ")
            self.expect(session.delete(url, timeout=120), 200, "DELETE")  # keeps the disk use bounded

    def raw_client(self):
        rng = random.Random()
        try:
            while time.monotonic() < self.deadline:
                ident, data = self.new_id(), os.urandom(rng.choice((10, 20_000, 200_000)))
                body = chunk(data[: len(data) // 2]) + chunk(data[len(data) // 2 :]) + LAST_CHUNK
                resp = raw("PUT", f"/{ident}", self.srv.port, headers=["Transfer-Encoding: chunked"], body=body)
                self.count()
                if resp.status != 201:
                    self.failed(f"raw chunked PUT: {resp.status} {resp.body[:200]!r}")
                    continue
                resp = raw("GET", f"/{ident}", self.srv.port)
                self.count()
                if resp.status != 200 or resp.body != data:
                    self.failed(f"raw GET {ident}: {resp.status}, bytes {'differ' if resp.body != data else 'same'}")
        except Exception as exc:  # noqa: BLE001 - reported as a failure of the service
            self.failed(f"raw client: {exc!r}")


def test_64_clients_mixed_load(start, new_id):
    srv = start("overload")
    large = {}
    for size in (16 << 20, 32 << 20):
        ident, data = new_id(), os.urandom(size)
        store(srv, ident, data)
        large[ident] = (data, sha256(data))
    load = Load(srv, new_id, {ident: (None, digest) for ident, (_, digest) in large.items()})
    pids = workers(srv, WORKERS)

    load.run(min(3.0, SECONDS))  # warm up: every worker thread and buffer pool in use once
    assert load.errors == [], load.errors[:10]
    # the workers have closed the warm-up's connections (that takes a moment after its clients closed)
    assert wait_until(lambda: not open_connections(srv.port), timeout=30), open_connections(srv.port)
    fds_before = {pid: fd_count(pid) for pid in pids}
    rss_before = {pid: rss_kib(pid) for pid in pids}

    load.run(SECONDS)
    assert load.errors == [], f"{len(load.errors)} errors of {load.requests} requests: {load.errors[:10]}"
    assert load.requests > 0
    assert workers(srv, WORKERS) == pids, "a worker died under load"
    rss_after = {pid: rss_kib(pid) for pid in pids}
    for pid in pids:
        assert rss_after[pid] - rss_before[pid] < RSS_GROWTH_KIB, (rss_before, rss_after)
    assert wait_until(lambda: all(fd_count(pid) <= fds_before[pid] + FD_SLACK for pid in pids), timeout=60), (
        fds_before,
        {pid: fd_count(pid) for pid in pids},
    )
    print(f"overload: {load.requests} requests, RSS KiB {rss_before} -> {rss_after}, fds {fds_before}")
