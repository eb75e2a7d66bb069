"""Helpers for the end-to-end tests: start the real service, talk raw HTTP.

A ``Server`` is the real gunicorn (``gunicorn.conf.py`` + ``wsgi:app``) or the
real ``pacifica-archiveinterface`` command, on a free loopback port, with a
private prefix and HOME, logging to a file.  Nothing here mocks the service.
How a process is started, found ready and stopped is ``harness``'s.
"""

import itertools
import os
import socket
import sys
import time
from pathlib import Path

from harness import ROOT, Spawned, free_port, gunicorn_command, gunicorn_listening, root_status, service_env
from harness import die_with_parent as _die_with_parent  # noqa: F401 (tests/sideband/mariadb.py)

from pyai.archive.ids import id2filename  # the layout itself is pinned to the contract in tests/unit/test_ids.py

BIN = Path(sys.executable).parent
START_TIMEOUT = 20.0


class Server(Spawned):
    """One running service process (gunicorn or the CLI) and where it keeps things."""

    def __init__(self, workdir, env, command=None, port=None, prefix=None, wrapper=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        super().__init__(self.workdir / f"server-{port}.log", port)
        self.env = env
        # wrapper: a command the service runs under (e.g. strace ... --), its arguments before the service's
        self.command = [*wrapper, *(command or gunicorn_command(self.port))]
        self.prefix = Path(os.path.realpath(prefix or env.get("PAI_PREFIX", self.workdir / "prefix")))

    def id_url(self, ident):
        return f"{self.url}/{ident}"

    def start(self):
        self.spawn(self.command, env=self.env, cwd=ROOT)
        self.wait_ready(self._answers_as_us, START_TIMEOUT)
        return self

    def _answers_as_us(self):
        status = root_status(self.port)
        # only once gunicorn says it listens (on loopback or on every address) is the answer ours
        if status == 200 and gunicorn_listening(self.log(), self.port):
            return True
        return f"GET / answered {status}"

    def stored_path(self, ident):
        """Where the contract says the file of ``ident`` lives (safe-name or id2filename)."""
        if self.env.get("PAI_USE_ID2FILENAME", "false").lower() == "true":
            return Path(str(self.prefix) + id2filename(int(ident)))
        return self.prefix / str(ident)

    def temp_files(self):
        """Temporary upload files anywhere under the prefix."""
        return [p for p in self.prefix.rglob(".pyai-tmp*")]

    def settled_temp_files(self):
        """Temporary upload files under their sweepable names: a ``.pyai-tmp-new-`` name lives only
        until its owner has locked the file (microseconds), so it may be gone when looked at next."""
        return [p for p in self.temp_files() if not p.name.startswith(".pyai-tmp-new-")]

    def received(self):
        """The sizes of the temporary upload files: how many bytes each upload in flight has written."""
        sizes = []
        for path in self.temp_files():
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:  # renamed meanwhile (a new name, once locked) or its upload ended
                continue
        return sizes

    def all_files(self):
        return sorted(p for p in self.prefix.rglob("*") if not p.is_dir())


class RawResponse:
    def __init__(self, status, reason, headers, body, interim):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value (last wins)
        self.body = body
        self.interim = interim  # list of 1xx status codes seen before the final one

    def __repr__(self):
        return f"<RawResponse {self.status} {self.reason} {self.headers} {self.body[:200]!r}>"


def recv_all(sock):
    """Everything the peer sends until it closes (or resets, or the socket times out)."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def parse_response(data, head=False):
    """Parse one HTTP/1.x response (after any 1xx) from bytes read until close."""
    interim = []
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            raise AssertionError(f"no complete HTTP response in {data[:300]!r}")
        lines = data[:head_end].decode("latin-1").split("\r\n")
        rest = data[head_end + 4 :]
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        if 100 <= status < 200:
            interim.append(status)
            data = rest
            continue
        break
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head or status in (204, 304):
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(rest)
    elif "content-length" in headers:
        body = rest[: int(headers["content-length"])]
    else:
        body = rest
    return RawResponse(status, reason, headers, body, interim)


def _dechunk(data):
    out = []
    while data:
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def raw_request(port, request_bytes, head=False, timeout=15.0):
    """Send ``request_bytes`` as is (it should say Connection: close) and parse the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request_bytes)
        data = recv_all(sock)
    return parse_response(data, head=head)


def raw(method, target, port, headers=(), body=b""):
    """Build and send one request with the target exactly as given (no normalising)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines.extend(headers)
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return raw_request(port, request, head=(method == "HEAD"))


def wait_until(predicate, timeout=20.0, interval=0.1):
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def assert_error(resp, status, prefix=None):
    """The error contract: status, JSON body with the four keys, no traceback, no path."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) >= {"status", "message", "traceback", "version"}, body
    assert body["status"].split(" ", 1)[0] == str(status), body
    assert isinstance(body["message"], str) and body["message"], body
    assert "total_bytes" not in body, body
    assert "Traceback (most recent" not in resp.text
    if prefix is not None:
        assert str(prefix) not in resp.text, resp.text
    return body


# The compatible API's HEAD of a missing id says "File Not Found" in each of these headers.
NOT_FOUND_HEADERS = (
    "X-Pacifica-File",
    "X-Content-Length",
    "Last-Modified",
    "X-Pacifica-Ctime",
    "X-Pacifica-Bytes-Per-Level",
    "X-Pacifica-File-Storage-Media",
)


def assert_head_not_found(header):
    """The headers of the compatible API's HEAD of a missing id; ``header(name)`` reads one from
    the answer (``resp.headers.get`` of requests, or an in-process answer's)."""
    assert header("X-Pacifica-Messsage") == "File Not found"
    for name in NOT_FOUND_HEADERS:
        assert header(name) == "File Not Found", (name, header(name))


def corrupt(path, offset, mask=0x01):
    """Change a stored file behind the service's back: its byte at ``offset`` xor ``mask``."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ mask]))


LIVE = []  # running servers, for the failure report
COUNTER = itertools.count()


class ServerPool:
    """Starts servers under one base directory and stops them all at the end: ``close()``, or as a
    context manager however the block ends.  Tests get theirs from the ``server_pool`` fixture
    (tests/fixtures/servers.py), which closes it when the scope that asked for it ends."""

    def __init__(self, base, impl, backend="posix"):
        self.base = Path(base)
        self.impl = impl
        self.backend = backend
        self.servers = []

    def start(self, name="srv", *, command=None, port=None, prefix=None, impl=True, wrapper=(), **settings):
        """A started Server; ``settings`` are environment variables (None removes one); ``wrapper``
        is put in front of the command.

        By default: the pool's backend, a fresh ``<workdir>/prefix``, PYAI_IMPL=impl.
        """
        workdir = self.base / f"{name}-{next(COUNTER)}"
        workdir.mkdir(parents=True)
        home = workdir / "home"
        home.mkdir()
        defaults = {"PAI_BACKEND_TYPE": self.backend, "PAI_PREFIX": str(workdir / "prefix")}
        if self.backend == "hpss":
            # The emulator keeps the namespace under the prefix, files at id2filename.
            defaults["PAI_USE_ID2FILENAME"] = "true"
        if impl:
            defaults["PYAI_IMPL"] = self.impl
        defaults.update(settings)
        env = service_env(home, **defaults)
        for attempt in range(3):
            srv = Server(workdir, env, command=command, port=port, prefix=prefix, wrapper=wrapper)
            self.servers.append(srv)
            try:
                srv.start()
                break
            except RuntimeError:
                # another process may have taken the free port we picked: pick again
                if command is not None or port is not None or "in use" not in srv.log() or attempt == 2:
                    raise
        LIVE.append(srv)
        return srv

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        for srv in self.servers:
            srv.stop()
            if srv in LIVE:
                LIVE.remove(srv)
