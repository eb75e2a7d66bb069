"""deploy/nginx/pyai.conf in front of pyai: bodies stream through both ways, byte-exact.

A real nginx (nginx-light) runs the shipped file (see ``front``) before a real
gunicorn.  What the file promises is checked from outside: an upload reaches pyai's
temporary file while the client is still sending (no request buffering), whole files,
ranges and chunked uploads arrive unchanged, a 1 GiB file goes there and back,
``Expect: 100-continue`` works and a refused upload stores nothing, and pyai's JSON
errors and its view of the client's Host come through.
"""

import hashlib
import os
import secrets
import socket
import subprocess

import pytest
import requests
from server import assert_error, parse_response, recv_all, wait_until

from deploy.front import Nginx
from deploy.tools import require_tool
from deploy.unit import NGINX_CONF

MIB = 1024 * 1024
TIMEOUT = 60
LARGE = 1024 * MIB
LARGE_TIMEOUT = 300
RW = secrets.token_hex(16)


@pytest.fixture(scope="module")
def pool(server_pool, request):
    return server_pool(request)


def front_of(pool, work, **settings):
    """(pyai, nginx before it)."""
    srv = pool.start("behind-nginx", **settings)
    return srv, Nginx(work, srv.port).start()


@pytest.fixture(scope="module")
def front(pool, tmp_path_factory):
    srv, nginx = front_of(pool, tmp_path_factory.mktemp("nginx"))
    try:
        yield srv, nginx
    finally:
        nginx.stop()


@pytest.fixture(scope="module")
def guarded(pool, tmp_path_factory):
    """The same with authentication on (a read-write token only)."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text(f"rw {RW}\n")
    tokens.chmod(0o600)
    srv, nginx = front_of(pool, tmp_path_factory.mktemp("nginx-auth"), PAI_AUTH_TOKENS_FILE=str(tokens))
    try:
        yield srv, nginx
    finally:
        nginx.stop()


@pytest.fixture(scope="module")
def curl():
    return require_tool("curl", "curl")


def new_id():
    return f"front-{secrets.token_hex(6)}"


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def stored_sha256(srv, ident):
    return sha256_file(srv.stored_path(ident))


def test_the_file_streams_both_ways():
    """What docs/deployment.md asks of nginx is in the shipped file."""
    text = NGINX_CONF.read_text()
    for directive in (
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_request_buffering off;",
        "proxy_buffering off;",
        "client_max_body_size 0;",
        "keepalive ",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert directive in text, directive


HALF_SENT = 16 * MIB  # of the 32 MiB sent, more than socket and proxy buffers could hold


def put_head(ident, port, length):
    return f"PUT /{ident} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"


def pyai_received(srv):
    """The bytes in pyai's temporary upload files."""
    return max((p.stat().st_size for p in srv.temp_files() if p.exists()), default=0)


@pytest.mark.quick
def test_upload_reaches_pyai_while_the_client_still_sends(front):
    """Half a 64 MiB body sent, then a pause: pyai's temporary file already holds most of
    it (nginx would otherwise hold it all until the last byte).  Then the rest: 201."""
    srv, nginx = front
    ident = new_id()
    body = os.urandom(64 * MIB)
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=TIMEOUT) as sock:
        sock.sendall(put_head(ident, nginx.port, len(body)).encode() + body[:half])
        assert wait_until(lambda: pyai_received(srv) >= HALF_SENT, timeout=TIMEOUT), (
            pyai_received(srv),
            nginx.error_log(),
        )
        assert nginx.buffered() == 0
        assert not srv.stored_path(ident).exists()
        sock.sendall(body[half:])
        answer = parse_response(recv_all(sock))
    assert answer.status == 201, (answer, nginx.error_log())
    assert stored_sha256(srv, ident) == hashlib.sha256(body).hexdigest()


def test_the_streaming_check_can_fail(pool, tmp_path):
    """The control experiment: the same file with request buffering on.  nginx then keeps
    the half-sent body on its own disk and pyai has not seen the request at all."""
    srv = pool.start("behind-buffering-nginx")
    with_buffering = Nginx(
        tmp_path / "nginx",
        srv.port,
        edit=lambda text: text.replace("proxy_request_buffering off;", "proxy_request_buffering on;"),
    ).start()
    try:
        body = os.urandom(64 * MIB)
        with socket.create_connection(("127.0.0.1", with_buffering.port), timeout=TIMEOUT) as sock:
            sock.sendall(put_head(new_id(), with_buffering.port, len(body)).encode() + body[: len(body) // 2])
            assert wait_until(lambda: with_buffering.buffered() >= HALF_SENT, timeout=TIMEOUT)
            assert srv.temp_files() == []
    finally:
        with_buffering.stop()


def test_get_whole_and_ranges(front):
    srv, nginx = front
    ident = new_id()
    body = os.urandom(5 * MIB + 3)
    assert requests.put(f"{nginx.url}/{ident}", data=body, timeout=TIMEOUT).status_code == 201
    whole = requests.get(f"{nginx.url}/{ident}", timeout=TIMEOUT)
    assert whole.status_code == 200 and whole.content == body
    assert whole.headers["Content-Length"] == str(len(body))
    part = requests.get(f"{nginx.url}/{ident}", headers={"Range": "bytes=4194300-4194399"}, timeout=TIMEOUT)
    assert part.status_code == 206, part.text
    assert part.content == body[4194300:4194400]
    assert part.headers["Content-Range"] == f"bytes 4194300-4194399/{len(body)}"
    tail = requests.get(f"{nginx.url}/{ident}", headers={"Range": "bytes=-10"}, timeout=TIMEOUT)
    assert tail.status_code == 206 and tail.content == body[-10:]


def test_chunked_upload_from_a_pipe(front, curl):
    """curl -T - reads a pipe and sends it chunked; nginx passes the chunks on unbuffered."""
    srv, nginx = front
    ident = new_id()
    body = os.urandom(3 * MIB + 5)
    proc = subprocess.run(
        [
            curl,
            "-sS",
            "--max-time",
            str(TIMEOUT),
            "-T",
            "-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"{nginx.url}/{ident}",
        ],
        input=body,
        capture_output=True,
        timeout=TIMEOUT + 10,
    )
    assert proc.stdout == b"201", (proc.stdout, proc.stderr, nginx.error_log())
    assert stored_sha256(srv, ident) == hashlib.sha256(body).hexdigest()


def write_random(path, size):
    """A file of ``size`` random bytes, written in MiB blocks; its sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(size // MIB):
            block = os.urandom(MIB)
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


@pytest.mark.slow
def test_one_gib_there_and_back(front, curl, tmp_path):
    """1 GiB from disk to disk through nginx: curl reads the file as it sends and writes the
    answer as it comes; nothing holds the file in memory."""
    srv, nginx = front
    ident = new_id()
    source, copy = tmp_path / "source", tmp_path / "copy"
    expected = write_random(source, LARGE)
    url = f"{nginx.url}/{ident}"
    try:
        put = subprocess.run(
            [
                curl,
                "-sS",
                "--max-time",
                str(LARGE_TIMEOUT),
                "-T",
                str(source),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
            capture_output=True,
            timeout=LARGE_TIMEOUT + 10,
        )
        assert put.stdout == b"201", (put.stdout, put.stderr, nginx.error_log())
        source.unlink()
        get = subprocess.run(
            [curl, "-sS", "--max-time", str(LARGE_TIMEOUT), "-o", str(copy), "-w", "%{http_code}", url],
            capture_output=True,
            timeout=LARGE_TIMEOUT + 10,
        )
        assert get.stdout == b"200", (get.stdout, get.stderr, nginx.error_log())
        assert copy.stat().st_size == LARGE
        assert sha256_file(copy) == expected
    finally:
        for path in (source, copy, srv.stored_path(ident)):
            path.unlink(missing_ok=True)


def put_expecting_continue(curl, url, source, headers=()):
    """curl PUT of ``source`` with ``Expect: 100-continue``: (status, whether a 100 came, body)."""
    extra = [arg for header in headers for arg in ("-H", header)]
    proc = subprocess.run(
        [curl, "-sS", "-v", "--max-time", str(TIMEOUT), "-H", "Expect: 100-continue", *extra, "-T", str(source), url],
        capture_output=True,
        timeout=TIMEOUT + 10,
    )
    trace = proc.stderr.decode(errors="replace")
    status = next(int(line.split()[2]) for line in reversed(trace.splitlines()) if line.startswith("< HTTP/"))
    return status, "< HTTP/1.1 100 Continue" in trace, proc.stdout


def test_expect_100_continue(front, curl, tmp_path):
    srv, nginx = front
    ident = new_id()
    source = tmp_path / "body"
    expected = write_random(source, 4 * MIB)
    status, continued, _ = put_expecting_continue(curl, f"{nginx.url}/{ident}", source)
    assert (status, continued) == (201, True), nginx.error_log()
    assert stored_sha256(srv, ident) == expected


def test_expect_100_continue_refused_when_the_id_is_taken(front, curl, tmp_path):
    """A PUT to an id that holds another file: 409, pyai's JSON, and the stored file untouched."""
    srv, nginx = front
    ident = new_id()
    first = os.urandom(1000)
    assert requests.put(f"{nginx.url}/{ident}", data=first, timeout=TIMEOUT).status_code == 201
    source = tmp_path / "other"
    write_random(source, 8 * MIB)
    status, _, body = put_expecting_continue(curl, f"{nginx.url}/{ident}", source)
    assert status == 409, (body, nginx.error_log())
    assert b'"status"' in body and b"Traceback" not in body
    assert srv.stored_path(ident).read_bytes() == first
    assert wait_until(lambda: srv.temp_files() == [], timeout=TIMEOUT), srv.temp_files()


def test_expect_100_continue_refused_without_a_token(guarded, curl, tmp_path):
    """Authentication on, no token: 401 through nginx, nothing stored; with the token: 201."""
    srv, nginx = guarded
    ident = new_id()
    source = tmp_path / "body"
    expected = write_random(source, 8 * MIB)
    status, _, body = put_expecting_continue(curl, f"{nginx.url}/{ident}", source)
    assert status == 401, (body, nginx.error_log())
    assert not srv.stored_path(ident).exists()
    assert wait_until(lambda: srv.temp_files() == [], timeout=TIMEOUT), srv.temp_files()
    status, continued, _ = put_expecting_continue(
        curl, f"{nginx.url}/{ident}", source, headers=[f"Authorization: Bearer {RW}"]
    )
    assert (status, continued) == (201, True), nginx.error_log()
    assert stored_sha256(srv, ident) == expected


def test_errors_stay_pyai_json(front):
    srv, nginx = front
    missing = requests.get(f"{nginx.url}/{new_id()}", timeout=TIMEOUT)
    assert_error(missing, 404, prefix=srv.prefix)
    assert "nginx" not in missing.text
    ident = new_id()
    assert requests.put(f"{nginx.url}/{ident}", data=b"abc", timeout=TIMEOUT).status_code == 201
    beyond = requests.get(f"{nginx.url}/{ident}", headers={"Range": "bytes=10-20"}, timeout=TIMEOUT)
    assert_error(beyond, 416, prefix=srv.prefix)


def test_pyai_sees_the_clients_host_and_scheme(front):
    """The Tape API names its own address from the Host nginx passes on (the client's, port included)."""
    _, nginx = front
    discovery = requests.get(f"{nginx.url}/.well-known/wlcg-tape-rest-api", timeout=TIMEOUT)
    assert discovery.status_code == 200, discovery.text
    assert discovery.json()["endpoints"][0]["uri"] == f"http://127.0.0.1:{nginx.port}/api/v1"
