"""Helpers for the end-to-end tests: start the real service, talk raw HTTP.

A ``Server`` is the real gunicorn (``gunicorn.conf.py`` + ``wsgi:app``) or the
real ``pacifica-archiveinterface`` command, on a free loopback port, with a
private prefix and HOME, logging to a file.  Nothing here mocks the service.
"""

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from pyai.archive.ids import id2filename  # the layout itself is pinned to the contract in tests/unit/test_ids.py

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT = 20.0
# environment variables of the service that must never leak in from the caller
_SCRUB_PREFIXES = ("PAI_", "PYAI_")
_SCRUB_NAMES = ("ARCHIVEINTERFACE_CONFIG",)


def _die_with_parent():
    """In the child: get SIGTERM when the test process dies, so no server outlives a killed run."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(home, **settings):
    """os.environ without any PAI_*/PYAI_* setting, plus ``settings`` (None = unset)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES
    }
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for key, value in settings.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def gunicorn_command(port):
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "wsgi:app",
    ]


class Server:
    """One running service process (gunicorn or the CLI) and where it keeps things."""

    def __init__(self, workdir, env, command=None, port=None, prefix=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.env = env
        self.command = command or gunicorn_command(self.port)
        self.prefix = Path(os.path.realpath(prefix or env.get("PAI_PREFIX", self.workdir / "prefix")))
        self.log_path = self.workdir / f"server-{self.port}.log"
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def id_url(self, ident):
        return f"{self.url}/{ident}"

    def start(self):
        exe = self.command[0]
        if os.sep in exe and not os.path.exists(exe):
            raise RuntimeError(f"{exe} does not exist (is the package installed: pip install -e .?)")
        self._log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            self._log.close()
            self._log = None
            raise
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"service exited with {self.proc.returncode} during start-up:\n{self.log()}"
                )
            log = self.log()
            if "Connection in use" in log:
                # another process (another test run on this machine) has the port: whoever
                # answers there is not us
                self.stop()
                raise RuntimeError(f"port {self.port} in use by another process:\n{log}")
            try:
                resp = requests.get(self.url + "/", timeout=2)
                # only once gunicorn says it listens (on loopback or on every address) is the answer ours
                if resp.status_code == 200 and self._listening_line_logged():
                    return self
                last = f"GET / answered {resp.status_code}"
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service not ready after {START_TIMEOUT}s ({last}):\n{self.log()}")

    def _listening_line_logged(self):
        log = self.log()
        return any(f"Listening at: http://{host}:{self.port} " in log for host in ("127.0.0.1", "0.0.0.0", "[::]"))

    def stop(self, grace=5.0):
        """SIGTERM the process group, SIGKILL it if it lingers; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log(self, tail=6000):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return text[-tail:]

    def stored_path(self, ident):
        """Where the contract says the file of ``ident`` lives (safe-name or id2filename)."""
        if self.env.get("PAI_USE_ID2FILENAME", "false").lower() == "true":
            return Path(str(self.prefix) + id2filename(int(ident)))
        return self.prefix / str(ident)

    def temp_files(self):
        """Temporary upload files anywhere under the prefix."""
        return [p for p in self.prefix.rglob(".pyai-tmp*")]

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


LIVE = []  # running servers, for the failure report
COUNTER = itertools.count()


class ServerPool:
    """Starts servers under one base directory and stops them all at the end."""

    def __init__(self, base, impl, backend="posix"):
        self.base = Path(base)
        self.impl = impl
        self.backend = backend
        self.servers = []

    def start(self, name="srv", *, command=None, port=None, prefix=None, impl=True, **settings):
        """A started Server; ``settings`` are environment variables (None removes one).

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
            srv = Server(workdir, env, command=command, port=port, prefix=prefix)
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

    def close(self):
        for srv in self.servers:
            srv.stop()
            if srv in LIVE:
                LIVE.remove(srv)
