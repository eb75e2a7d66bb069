"""Bearer tokens on the real service: who gets in, what a refusal leaves, the start-up checks."""

import json
import os
import signal
import socket
import subprocess

import pytest
import requests
from server import BIN, ROOT, assert_error, free_port, gunicorn_command, parse_response, service_env, wait_until

RO = "ro-token-for-the-auth-tests-0001"
RW = "rw-token-for-the-auth-tests-0002"
MT = "metrics-token-for-the-auth-tests-3"
CHALLENGE = 'Bearer realm="pyai"'
CREDENTIALS = {
    "none": None,
    "wrong": "Bearer not-a-configured-token-0000",
    "basic": "Basic dXNlcjpwYXNzd29yZA==",
    "ro": f"Bearer {RO}",
    "rw": f"Bearer {RW}",
    "metrics": f"Bearer {MT}",
}


def write_tokens(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def authsrv(make_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("auth")
    tokens = write_tokens(base / "tokens", f"# the auth tests\nro {RO}\nrw {RW}  # the writer\nmetrics {MT} prom\n")
    incoming = base / "incoming"
    incoming.mkdir()
    srv = make_server("auth", PAI_AUTH_TOKENS_FILE=str(tokens), PAI_PATCH_ROOTS=str(incoming))
    srv.incoming = incoming
    return srv


def send(srv, method, ident, credential, **kw):
    headers = dict(kw.pop("headers", {}))
    if CREDENTIALS[credential] is not None:
        headers["Authorization"] = CREDENTIALS[credential]
    return requests.request(method, srv.id_url(ident), headers=headers, timeout=30, **kw)


def store(srv, ident, data):
    resp = send(srv, "PUT", ident, "rw", data=data)
    assert resp.status_code == 201, resp.text


def present(srv, ident):
    return send(srv, "HEAD", ident, "rw").status_code == 204


# Each method with each credential: the status, and what the archive holds afterwards.
ALLOWED = {"GET": 200, "HEAD": 204, "POST": 200, "PUT": 201, "PATCH": 200, "DELETE": 200}
READ_ONLY_REFUSED = {"PUT", "PATCH", "DELETE"}


def expected(method, credential):
    if credential in ("none", "wrong", "basic"):
        return 401
    if credential == "ro" and method in READ_ONLY_REFUSED:
        return 403
    if credential == "metrics":  # it reads /metrics and nothing else
        return 403
    return ALLOWED[method]


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize("method", list(ALLOWED))
@pytest.mark.quick
def test_method_and_credential(authsrv, uid, method, credential):
    data = os.urandom(3000)
    source = authsrv.incoming / f"src-{uid}"
    kw = {}
    if method == "PUT":
        kw["data"] = data
    elif method == "PATCH":
        source.write_bytes(data)
        kw = {"data": json.dumps({"path": str(source)}), "headers": {"Content-Type": "application/json"}}
    else:
        store(authsrv, uid, data)

    resp = send(authsrv, method, uid, credential, **kw)
    status = expected(method, credential)

    if status in (401, 403):
        if method == "HEAD":
            assert resp.status_code == status
        else:
            body = assert_error(resp, status, authsrv.prefix)
            assert RO not in resp.text and RW not in resp.text and MT not in resp.text
            assert body["traceback"].startswith(f"{method} /{uid}: ")
        challenge = resp.headers["WWW-Authenticate"]
        if status == 403:
            assert challenge == CHALLENGE + ', error="insufficient_scope"'
        elif credential == "wrong":
            assert challenge == CHALLENGE + ', error="invalid_token"'
        else:
            assert challenge == CHALLENGE
        # nothing changed: a refused write stored, moved or deleted nothing
        assert present(authsrv, uid) is (method not in ("PUT", "PATCH"))
        if method == "PATCH":
            assert source.read_bytes() == data
        assert authsrv.temp_files() == []
        return

    assert resp.status_code == status, resp.text
    assert "WWW-Authenticate" not in resp.headers
    if method == "GET":
        assert resp.content == data
    elif method == "HEAD":
        assert resp.headers["X-Content-Length"] == str(len(data))
    elif method in ("PUT", "PATCH"):
        assert authsrv.stored_path(uid).read_bytes() == data
    elif method == "DELETE":
        assert not present(authsrv, uid)


@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_health_check_is_open(authsrv, credential):
    headers = {} if CREDENTIALS[credential] is None else {"Authorization": CREDENTIALS[credential]}
    resp = requests.get(authsrv.url + "/", headers=headers, timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"message": "Pacifica Archive Interface Up and Running"}
    assert requests.head(authsrv.url + "/", headers=headers, timeout=10).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_who_reads_the_metrics(authsrv, method, credential):
    """Every configured scope reads /metrics (a scraper needs only the metrics one); no token is 401."""
    headers = {} if CREDENTIALS[credential] is None else {"Authorization": CREDENTIALS[credential]}
    resp = requests.request(method, authsrv.url + "/metrics", headers=headers, timeout=10)
    if credential in ("none", "wrong", "basic"):
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith(CHALLENGE)
    else:
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("method, target", [("PUT", "/metrics"), ("POST", "/metrics"), ("GET", "/api/v1/stage/x"),
                                            ("GET", "/readyz/x"), ("GET", "/metrics/x")])  # fmt: skip
def test_a_metrics_token_is_refused_elsewhere(authsrv, method, target):
    resp = requests.request(method, authsrv.url + target, headers={"Authorization": f"Bearer {MT}"}, timeout=10)
    assert resp.status_code == 403, resp.text
    assert resp.headers["WWW-Authenticate"] == CHALLENGE + ', error="insufficient_scope"'
    assert MT not in resp.text


def test_refusal_comes_before_the_storage(authsrv, uid):
    """Without a token nothing about the archive shows: absent ids and bad URLs are 401 too."""
    store(authsrv, uid, b"exists")
    for method, target in [
        ("GET", f"/{uid}"),
        ("GET", "/no-such-id-here"),
        ("DELETE", "/no-such-id-here"),
        ("GET", "/.bad"),
        ("GET", "/a/b"),
        ("POST", "/"),
        ("OPTIONS", f"/{uid}"),
    ]:
        resp = requests.request(method, authsrv.url + target, timeout=10)
        assert_error(resp, 401, authsrv.prefix)
    # a read-only token writing to a taken id: 403, not the 409 the storage would give
    assert_error(send(authsrv, "PUT", uid, "ro", data=b"other"), 403, authsrv.prefix)
    assert_error(send(authsrv, "PUT", uid, "rw", data=b"other"), 409, authsrv.prefix)


def test_read_only_token_cannot_upload_chunked(authsrv, uid):
    resp = send(authsrv, "PUT", uid, "ro", data=iter([b"chunk one", b"chunk two"]))
    assert_error(resp, 403, authsrv.prefix)
    assert not present(authsrv, uid)


# --- connections after a refusal ------------------------------------------------------


def read_until_close(sock):
    """Everything until the server closes the connection; a connection it keeps open fails."""
    sock.settimeout(20)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"the server kept the connection open after {b''.join(chunks)[:300]!r}") from None
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def read_one_response(sock):
    """The bytes of one response with a Content-Length, leaving the connection open."""
    data = b""
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(parse_response(data[: head_end + 4], head=True).headers["content-length"])
            if len(data) >= head_end + 4 + length:
                return data
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk


def test_refused_put_with_unread_body_closes_the_connection(authsrv, uid):
    """Keep-alive PUT of 8 MiB without a token: 401 with Connection: close after the first bytes, then EOF."""
    with socket.create_connection(("127.0.0.1", authsrv.port), timeout=20) as sock:
        head = f"PUT /{uid} HTTP/1.1\r\nHost: x\r\nContent-Length: {8 << 20}\r\n\r\n"
        sock.sendall(head.encode() + b"x" * 65536)
        data = read_until_close(sock)
    resp = parse_response(data)
    assert resp.status == 401, resp
    assert resp.headers["connection"].lower() == "close"
    assert resp.headers["www-authenticate"] == CHALLENGE
    assert json.loads(resp.body)["status"] == "401 Unauthorized"
    assert data.count(b"HTTP/1.1 ") == 1  # one answer, and the server hung up
    assert not present(authsrv, uid)
    assert authsrv.temp_files() == []


@pytest.mark.parametrize("credential", ["none", "ro"])
def test_refused_body_is_never_read_as_a_request(authsrv, uid, credential):
    """The body of a refused PUT holds a complete authorised request; it must not run."""
    evil = uid + "-evil"
    smuggled = (
        f"PUT /{evil} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RW}\r\nContent-Length: 4\r\n\r\nEVIL".encode()
    )
    auth_line = "" if CREDENTIALS[credential] is None else f"Authorization: {CREDENTIALS[credential]}\r\n"
    head = f"PUT /{uid} HTTP/1.1\r\nHost: x\r\n{auth_line}Content-Length: {len(smuggled)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", authsrv.port), timeout=20) as sock:
        sock.sendall(head.encode() + smuggled)
        data = read_until_close(sock)
    assert parse_response(data).status == expected("PUT", credential)
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert not present(authsrv, evil) and not present(authsrv, uid)


def test_refused_get_keeps_the_connection(authsrv, uid):
    """A refusal without a body leaves the connection usable: the next request on it is served."""
    store(authsrv, uid, b"kept alive")
    with socket.create_connection(("127.0.0.1", authsrv.port), timeout=20) as sock:
        sock.sendall(f"GET /{uid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        refused = parse_response(read_one_response(sock))
        assert refused.status == 401 and refused.headers["connection"].lower() == "keep-alive"
        sock.sendall(
            f"GET /{uid} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RO}\r\nConnection: close\r\n\r\n".encode()
        )
        second = parse_response(read_until_close(sock))
    assert second.status == 200 and second.body == b"kept alive"


def test_session_goes_on_after_a_refused_upload(authsrv, uid):
    with requests.Session() as s:
        assert_error(s.put(authsrv.id_url(uid), data=b"y" * 300_000, timeout=30), 401, authsrv.prefix)
        s.headers["Authorization"] = f"Bearer {RW}"
        resp = s.put(authsrv.id_url(uid), data=b"second try", timeout=30)
        assert resp.status_code == 201, resp.text
        assert s.get(authsrv.id_url(uid), timeout=30).content == b"second try"


# --- curl -------------------------------------------------------------------------------


def curl(*args, output="/dev/null"):
    proc = subprocess.run(
        ["curl", "-sS", "-o", str(output), "-w", "%{http_code}", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def test_curl_with_bearer_header(authsrv, uid, tmp_path):
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(2 << 20))  # big enough for curl's Expect: 100-continue
    url = authsrv.id_url(uid)
    assert curl("-T", str(src), url) == 401
    assert curl("-T", str(src), "-H", f"Authorization: Bearer {RO}", url) == 403
    assert curl("-T", str(src), "-H", f"Authorization: Bearer {RW}", url) == 201
    assert curl(url) == 401
    out = tmp_path / "down.bin"
    assert curl("-H", f"Authorization: Bearer {RO}", url, output=out) == 200
    assert out.read_bytes() == src.read_bytes()
    assert curl("-X", "DELETE", "-H", f"Authorization: Bearer {RO}", url) == 403
    assert curl("-X", "DELETE", "-H", f"Authorization: Bearer {RW}", url) == 200


# --- start-up: the tokens file and the warning --------------------------------------------

SERVE = str(BIN / "pacifica-archiveinterface")


def run_briefly(command, env):
    """Run a start that should fail; (exit code, stderr). A start that does not fail is killed."""
    try:
        proc = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{command} started instead of refusing: {exc.stderr}") from None
    return proc.returncode, proc.stderr


def bad_tokens_files(base):
    """(tokens file, words of the one error line)."""
    return {
        "world-readable": (
            write_tokens(base / "open", f"rw {RW}\n", 0o644),
            ["readable or writable by everyone", "0644", "chmod o-rwx"],
        ),
        "group-writable": (
            write_tokens(base / "shared", f"rw {RW}\n", 0o660),
            ["writable by its group", "0660", "chmod g-w,o-rwx"],
        ),
        "bad-line": (write_tokens(base / "bad", f"ro {RO}\nadmin {RW}\n"), ["line 2", "'<scope> <token> [name]'"]),
        "missing": (base / "nowhere", ["cannot read the tokens file"]),
        "empty": (write_tokens(base / "empty", "# none yet\n"), ["holds no token"]),
    }


@pytest.mark.parametrize("case", ["world-readable", "group-writable", "bad-line", "missing", "empty"])
@pytest.mark.parametrize("how", ["cli-flag", "gunicorn-env"])
def test_bad_tokens_file_refused_with_one_line(tmp_path, case, how):
    tokens, words = bad_tokens_files(tmp_path)[case]
    port = free_port()
    env = service_env(tmp_path, PAI_PREFIX=str(tmp_path / "prefix"))
    if how == "cli-flag":
        command = [SERVE, "-p", str(port), "--tokens-file", str(tokens)]
    else:
        env["PAI_AUTH_TOKENS_FILE"] = str(tokens)
        command = gunicorn_command(port)
    rc, err = run_briefly(command, env)
    assert rc == 2, err
    assert "Traceback" not in err and RW not in err and RO not in err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    assert str(tokens) in errors[0] and all(w in errors[0] for w in words), errors[0]
    if how == "cli-flag":  # the CLI refuses before gunicorn says anything
        assert err.strip() == errors[0]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)


WARNING = "without authentication"


def bound_to_all(port):
    return gunicorn_command(port, host="0.0.0.0")


def test_warning_when_listening_beyond_loopback_without_auth(fresh_server):
    port = free_port()
    srv = fresh_server.start("open", command=bound_to_all(port), port=port)
    lines = [line for line in srv.log().splitlines() if WARNING in line]
    assert len(lines) == 1, srv.log()
    assert "[WARNING]" in lines[0] and f"0.0.0.0:{port}" in lines[0] and "tokens_file" in lines[0]


def test_warning_from_the_cli_too(fresh_server):
    port = free_port()
    srv = fresh_server.start("open-cli", command=[SERVE, "-a", "0.0.0.0", "-p", str(port)], port=port)
    assert srv.log().count(WARNING) == 1, srv.log()


def test_no_warning_with_auth(fresh_server, tmp_path):
    port = free_port()
    tokens = write_tokens(tmp_path / "tokens", f"rw {RW}\n")
    srv = fresh_server.start("closed", command=bound_to_all(port), port=port, PAI_AUTH_TOKENS_FILE=str(tokens))
    assert requests.get(srv.url + "/x", timeout=10).status_code == 401  # auth is really on
    assert WARNING not in srv.log() and "Booting worker" in srv.log()


def test_no_warning_on_loopback(server):
    assert WARNING not in server.log() and "Booting worker" in server.log()


def test_auth_is_off_by_default(server, uid):
    """The default service asks for no token (existing clients send none)."""
    assert requests.put(server.id_url(uid), data=b"open", timeout=10).status_code == 201
    resp = requests.get(server.id_url(uid), timeout=10)
    assert resp.status_code == 200 and "WWW-Authenticate" not in resp.headers
    assert requests.delete(server.id_url(uid), timeout=10).status_code == 200


def test_tokens_rotate_on_sighup(fresh_server, tmp_path, uid):
    """gunicorn's HUP starts new workers, which read the tokens file again: no restart needed."""
    tokens = write_tokens(tmp_path / "tokens", f"rw {RW}\n")
    srv = fresh_server.start("rotate", PAI_AUTH_TOKENS_FILE=str(tokens))
    url = srv.id_url(uid)
    assert requests.put(url, data=b"x", headers={"Authorization": f"Bearer {RW}"}, timeout=10).status_code == 201
    fresh = "a-fresh-token-after-rotation-0003"
    write_tokens(tokens, f"ro {fresh}\n")
    os.kill(srv.proc.pid, signal.SIGHUP)

    def rotated():
        # new connections each time: a kept-alive one may still reach an old worker
        old = requests.head(url, headers={"Authorization": f"Bearer {RW}", "Connection": "close"}, timeout=10)
        new = requests.head(url, headers={"Authorization": f"Bearer {fresh}", "Connection": "close"}, timeout=10)
        return old.status_code == 401 and new.status_code == 204

    assert wait_until(rotated, timeout=30), srv.log()
    assert requests.delete(url, headers={"Authorization": f"Bearer {fresh}"}, timeout=10).status_code == 403


def test_a_group_readable_file_serves_and_a_group_writable_one_refuses_a_reload(fresh_server, tmp_path, uid):
    """0640 (the service's group reads it) is the documented mode; made group-writable, the
    next HUP is refused, as with a file open to everyone: the running workers serve on."""
    tokens = write_tokens(tmp_path / "tokens", f"rw {RW}\n", 0o640)
    # one worker: the 201 below proves it has read the tokens file (a second one still booting
    # would read the file made group-writable, fail to boot, and stop the service)
    srv = fresh_server.start("group", PAI_AUTH_TOKENS_FILE=str(tokens), PAI_WORKERS="1")
    resp = requests.put(srv.id_url(uid), data=b"x", headers={"Authorization": f"Bearer {RW}"}, timeout=10)
    assert resp.status_code == 201
    tokens.chmod(0o660)
    os.kill(srv.proc.pid, signal.SIGHUP)
    assert wait_until(lambda: "reload refused" in srv.log(), timeout=60), srv.log()
    lines = [line for line in srv.log().splitlines() if "writable by its group" in line]
    assert lines and str(tokens) in lines[0] and "0660" in lines[0], srv.log()
    assert RW not in srv.log()
    assert srv.proc.poll() is None
    assert requests.head(srv.id_url(uid), headers={"Authorization": f"Bearer {RW}"}, timeout=10).status_code == 204
