"""Post-deployment checks for a running Pacifica archive interface (pyai or the original).

Run against any deployed instance:

    ARCHIVE_URL=http://archive:8080 pytest -q post_deployment_tests/deployment_test.py

Settings (environment):
    ARCHIVE_URL            base URL of the service (default http://127.0.0.1:8080)
    LARGE_FILE_SIZE        bytes of the large-file test (default 1 GiB); streamed, never held in memory
    MANY_FILES_TEST_COUNT  number of small files stored from 8 threads (default 1000)
    ARCHIVE_TOKEN          bearer token sent with every request when set (a read-write
                           token of a pyai with [auth]); unset: no Authorization header

Ids are random 40-bit integers (valid in both id modes), so reruns do not collide;
every file the tests store is deleted again.
"""

import hashlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

ARCHIVE_URL = os.environ.get("ARCHIVE_URL", "http://127.0.0.1:8080").rstrip("/")
LARGE_FILE_SIZE = int(os.environ.get("LARGE_FILE_SIZE", str(1024**3)))
MANY_FILES_TEST_COUNT = int(os.environ.get("MANY_FILES_TEST_COUNT", "1000"))
THREADS = 8
CHUNK = 1024 * 1024
TIMEOUT = (10, 600)  # connect, read


class BearerToken(requests.auth.AuthBase):
    """Adds ``Authorization: Bearer <token>`` to each request."""

    def __init__(self, token):
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


# None (requests' default) when ARCHIVE_TOKEN is unset: the requests are as they always were
AUTH = BearerToken(os.environ["ARCHIVE_TOKEN"]) if os.environ.get("ARCHIVE_TOKEN") else None

_lock = threading.Lock()
_used = set()
_stored = set()  # ids that may still exist; deleted at the end whatever happens
STATE = {}


def new_id():
    with _lock:
        while True:
            ident = str(secrets.randbits(40) | (1 << 39))
            if ident not in _used:
                _used.add(ident)
                return ident


def url(ident):
    return f"{ARCHIVE_URL}/{ident}"


@pytest.fixture(scope="module", autouse=True)
def cleanup():
    yield
    for ident in list(_stored):
        try:
            requests.delete(url(ident), timeout=30, auth=AUTH)
        except requests.RequestException:
            pass


def put(ident, data, session=requests, **kw):
    resp = session.put(url(ident), data=data, timeout=TIMEOUT, auth=AUTH, **kw)
    with _lock:
        _stored.add(ident)
    return resp


def test_up():
    resp = requests.get(ARCHIVE_URL + "/", timeout=30)  # the health check needs no token
    assert resp.status_code == 200
    assert resp.json()["message"] == "Pacifica Archive Interface Up and Running"


# --- one file through its life: put, stage, status, get, delete ---------------------


def test_put():
    ident = new_id()
    data = os.urandom(4096) + b"pyai post-deployment test"
    resp = put(ident, data, headers={"Last-Modified": "Sun, 06 Nov 1994 08:49:37 GMT"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["message"] == "File added to archive"
    assert body["total_bytes"] == len(data)
    STATE["ident"], STATE["data"] = ident, data


def test_stage():
    ident = STATE["ident"]
    resp = requests.post(url(ident), timeout=TIMEOUT, auth=AUTH)
    assert resp.status_code in (200, 202), resp.text
    body = resp.json()
    assert body["file"] == ident
    assert body["message"] in ("File was staged", "File is being staged")


def test_status():
    ident, data = STATE["ident"], STATE["data"]
    resp = requests.head(url(ident), timeout=TIMEOUT, auth=AUTH)
    assert resp.status_code in (200, 204)
    h = resp.headers
    assert h["X-Pacifica-Messsage"] == "File was found"
    assert int(h["X-Content-Length"]) == len(data)
    assert float(h["Last-Modified"]) == 784111777
    float(h["X-Pacifica-Ctime"])
    assert h["X-Pacifica-File-Storage-Media"] in ("disk", "tape")
    assert h["X-Pacifica-File"]


def test_get():
    ident, data = STATE["ident"], STATE["data"]
    resp = requests.get(url(ident), timeout=TIMEOUT, auth=AUTH)
    assert resp.status_code == 200
    assert "Content-Encoding" not in resp.headers
    assert resp.content == data
    part = requests.get(url(ident), params={"byte_range": "10-30"}, timeout=TIMEOUT, auth=AUTH)
    assert part.status_code == 200
    assert part.content == data[10:30]


def test_delete():
    ident = STATE["ident"]
    resp = requests.delete(url(ident), timeout=TIMEOUT, auth=AUTH)
    assert resp.status_code == 200
    _stored.discard(ident)
    head = requests.head(url(ident), timeout=TIMEOUT, auth=AUTH)
    assert head.status_code == 404
    assert head.headers["X-Pacifica-Messsage"] == "File Not found"


# --- a large file, streamed both ways -----------------------------------------------


class RandomStream:
    """A file-like body of ``size`` random bytes, hashed as it is read (Content-Length known)."""

    def __init__(self, size):
        self.size = size
        self.left = size
        self.sha = hashlib.sha256()
        self.block = os.urandom(CHUNK)
        self.counter = 0
        self.buf = b""
        self.pos = 0
        self.tail = b""  # the last 16 bytes sent

    def __len__(self):
        return self.size

    def read(self, n=-1):
        if self.left <= 0:
            return b""
        if self.pos >= len(self.buf):
            # a fresh-looking chunk each time without generating a GiB of entropy
            self.counter += 1
            self.buf = self.counter.to_bytes(8, "little") + self.block[8:]
            self.pos = 0
        avail = len(self.buf) - self.pos
        n = avail if n is None or n < 0 else min(n, avail)
        n = min(n, self.left)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        self.left -= n
        self.sha.update(data)
        self.tail = (self.tail + data[-16:])[-16:]
        return data


def test_large_file():
    ident = new_id()
    body = RandomStream(LARGE_FILE_SIZE)
    resp = put(ident, body)
    assert resp.status_code == 201, resp.text
    assert resp.json()["total_bytes"] == LARGE_FILE_SIZE
    assert body.left == 0
    head = requests.head(url(ident), timeout=TIMEOUT, auth=AUTH)
    assert int(head.headers["X-Content-Length"]) == LARGE_FILE_SIZE
    sha = hashlib.sha256()
    received = 0
    with requests.get(url(ident), stream=True, timeout=TIMEOUT, auth=AUTH) as got:
        assert got.status_code == 200
        assert "Content-Encoding" not in got.headers
        for chunk in got.iter_content(CHUNK):
            sha.update(chunk)
            received += len(chunk)
    assert received == LARGE_FILE_SIZE
    assert sha.hexdigest() == body.sha.hexdigest()
    # the last bytes, by byte_range, equal the end of what was sent
    end = f"{max(LARGE_FILE_SIZE - 16, 0)}-{LARGE_FILE_SIZE}"
    tail = requests.get(url(ident), params={"byte_range": end}, timeout=TIMEOUT, auth=AUTH)
    assert tail.status_code == 200
    assert tail.content == body.tail
    assert requests.delete(url(ident), timeout=TIMEOUT, auth=AUTH).status_code == 200
    _stored.discard(ident)


# --- many small files from many threads ---------------------------------------------


def test_many_files():
    per_thread = [
        MANY_FILES_TEST_COUNT // THREADS + (1 if i < MANY_FILES_TEST_COUNT % THREADS else 0) for i in range(THREADS)
    ]

    def worker(count):
        done = 0
        with requests.Session() as session:
            for _ in range(count):
                ident = new_id()
                data = os.urandom(1 + secrets.randbelow(8192))
                resp = put(ident, data, session=session)
                assert resp.status_code == 201, (ident, resp.status_code, resp.text)
                assert resp.json()["total_bytes"] == len(data)
                got = session.get(url(ident), timeout=TIMEOUT, auth=AUTH)
                assert got.status_code == 200, (ident, got.status_code)
                assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest(), ident
                gone = session.delete(url(ident), timeout=TIMEOUT, auth=AUTH)
                assert gone.status_code == 200, (ident, gone.status_code)
                with _lock:
                    _stored.discard(ident)
                done += 1
        return done

    with ThreadPoolExecutor(THREADS) as pool:
        assert sum(pool.map(worker, per_thread)) == MANY_FILES_TEST_COUNT
