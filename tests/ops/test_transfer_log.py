"""The JSON transfer log on the real gunicorn: every field of every kind of request, token
names, a client that leaves halfway, stages from tape, rotation on USR1, and the default (stderr).

Every line read is validated against the schema shipped with pyai (docs/operating.md's table
is checked against the same schema).
"""

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
from pathlib import Path

import jsonschema_rs  # schemathesis's validator, installed with the test extras
import pytest
import requests
from emulator import emu_cli, start_tape
from server import ROOT, free_port, gunicorn_command, service_env, wait_until

from pyai.ops import transfer_log
from pyai.ops.record import Record

SCHEMA = json.loads(Path(transfer_log.SCHEMA_PATH).read_text())
VALIDATOR = jsonschema_rs.Draft202012Validator(SCHEMA)
OPERATING = (ROOT / "docs" / "operating.md").read_text()
RO = "ro-token-of-the-transfer-log-tests-1"
RW = "rw-token-of-the-transfer-log-tests-2"
TIMEOUT = 15


def parsed(text):
    """The transfer log lines of ``text`` (other lines, such as gunicorn's, are skipped), validated."""
    lines = []
    for raw in text.splitlines():
        if not raw.startswith("{"):
            continue
        document = json.loads(raw)
        VALIDATOR.validate(document)
        lines.append(document)
    return lines


def read_lines(path):
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    assert text == "" or text.endswith("\n"), "a line is written whole"
    return parsed(text)


def line_of(source, timeout=10, **match):
    """The one line of ``source`` (a file, or a callable giving text) whose fields equal ``match``,
    waiting for it: the line is written when the exchange ends, which may be just after the
    client has the answer."""
    found = []

    def look():
        lines = parsed(source()) if callable(source) else read_lines(source)
        found[:] = [line for line in lines if all(line.get(key) == value for key, value in match.items())]
        return found

    assert wait_until(look, timeout=timeout, interval=0.05), f"no line with {match}"
    assert len(found) == 1, found
    return found[0]


def new_id():
    return f"tl{os.getpid()}-{secrets.token_hex(6)}"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def pool(server_pool, request):
    return server_pool(request)


@pytest.fixture(scope="module")
def logsrv(pool, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "transfer.log"
    incoming = tmp_path_factory.mktemp("incoming")
    srv = pool.start("tlog", PAI_TRANSFER_LOG=str(log), PAI_PATCH_ROOTS=str(incoming))
    srv.transfer_log, srv.incoming = log, incoming
    return srv


# --- the data plane -------------------------------------------------------------------


@pytest.mark.quick
def test_put_get_head_and_a_range(logsrv):
    ident, data = new_id(), os.urandom(300_000)
    put = requests.put(logsrv.id_url(ident), data=data, timeout=TIMEOUT)
    assert put.status_code == 201
    line = line_of(logsrv.transfer_log, id=ident, method="PUT")
    assert line["status"] == 201 and line["path"] == f"/{ident}"
    assert line["bytes_received"] == len(data) and line["bytes_sent"] == len(put.content)
    assert line["digest"] == sha256(data)  # the stored digest, the one this test computed
    assert line["token"] is None and line["medium"] is None and line["stage_wait"] is None
    assert line["client"] == "127.0.0.1" and line["pid"] in logsrv.worker_pids()

    get = requests.get(logsrv.id_url(ident), timeout=TIMEOUT)
    assert get.content == data
    line = line_of(logsrv.transfer_log, id=ident, method="GET")
    assert line["status"] == 200 and line["bytes_sent"] == len(data) and line["bytes_received"] == 0
    assert line["medium"] == "disk" and line["digest"] == sha256(data) and line["stage_wait"] is None
    assert line["ttfb"] is not None and 0 <= line["ttfb"] <= line["duration"]

    part = requests.get(logsrv.id_url(ident), headers={"Range": "bytes=1000-50999"}, timeout=TIMEOUT)
    assert part.status_code == 206 and part.content == data[1000:51000]
    line = line_of(logsrv.transfer_log, id=ident, method="GET", status=206)
    assert line["bytes_sent"] == 50_000

    assert requests.head(logsrv.id_url(ident), timeout=TIMEOUT).status_code == 204
    line = line_of(logsrv.transfer_log, id=ident, method="HEAD")
    assert line["status"] == 204 and line["bytes_sent"] == 0
    assert line["medium"] == "disk" and line["digest"] == sha256(data)


def test_a_small_get_asking_for_another_digest(logsrv):
    ident, data = new_id(), b"small and asked for md5"
    assert requests.put(logsrv.id_url(ident), data=data, timeout=TIMEOUT).status_code == 201
    resp = requests.get(logsrv.id_url(ident), headers={"Want-Digest": "MD5"}, timeout=TIMEOUT)
    assert resp.content == data and "Digest" in resp.headers
    line = line_of(logsrv.transfer_log, id=ident, method="GET")
    assert line["digest"] == "md5:" + hashlib.md5(data).hexdigest()
    assert line["bytes_sent"] == len(data)


def test_absent_ids_post_patch_delete(logsrv):
    missing = new_id()
    resp = requests.get(logsrv.id_url(missing), timeout=TIMEOUT)
    assert resp.status_code == 404
    line = line_of(logsrv.transfer_log, id=missing, method="GET")
    assert line["status"] == 404 and line["bytes_sent"] == len(resp.content)
    assert line["medium"] is None and line["digest"] is None
    assert requests.head(logsrv.id_url(missing), timeout=TIMEOUT).status_code == 404
    assert line_of(logsrv.transfer_log, id=missing, method="HEAD")["medium"] is None

    ident = new_id()
    source = logsrv.incoming / ident
    source.write_bytes(b"moved in")
    body = json.dumps({"path": str(source)}).encode()
    patch = requests.patch(logsrv.id_url(ident), data=body, timeout=TIMEOUT)
    assert patch.status_code == 200, patch.text
    line = line_of(logsrv.transfer_log, id=ident, method="PATCH")
    assert line["status"] == 200 and line["bytes_received"] == len(body) and line["digest"] is None

    assert requests.post(logsrv.id_url(ident), timeout=TIMEOUT).status_code == 200
    line = line_of(logsrv.transfer_log, id=ident, method="POST")
    assert line["medium"] == "disk" and line["stage_wait"] is None  # posix: always on disk

    assert requests.delete(logsrv.id_url(ident), timeout=TIMEOUT).status_code == 200
    assert line_of(logsrv.transfer_log, id=ident, method="DELETE")["status"] == 200


def test_a_get_the_client_abandons_halfway(logsrv):
    ident, size = new_id(), 48 << 20  # more than loopback's socket buffers hold
    logsrv.stored_path(ident).write_bytes(os.urandom(size))
    with socket.create_connection(("127.0.0.1", logsrv.port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(f"GET /{ident} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        while got < 1 << 20:
            chunk = sock.recv(65536)
            assert chunk
            got += len(chunk)
    line = line_of(logsrv.transfer_log, id=ident, method="GET")
    assert line["status"] == 200
    assert 0 < line["bytes_sent"] < size
    assert line["ttfb"] is not None and line["ttfb"] <= line["duration"]


def test_an_upload_the_client_abandons(logsrv):
    ident = new_id()
    with socket.create_connection(("127.0.0.1", logsrv.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"PUT /{ident} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode() + b"x" * 5000)
    line = line_of(logsrv.transfer_log, id=ident, method="PUT")
    assert line["digest"] is None and line["bytes_received"] == 5000
    assert line["status"] in (None, 400)  # gone before any answer, or answered for an incomplete body


# --- other paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, path",
    [("/", "/"), ("/?x=1", "/"), ("/healthz", "/healthz"), ("/metrics", "/metrics"),
     ("/.well-known/wlcg-tape-rest-api", "/.well-known/wlcg-tape-rest-api"),
     ("/api/v1/stage/none", "/api/v1/stage/none")],
)  # fmt: skip
def test_control_plane_paths(logsrv, target, path):
    marker = secrets.token_hex(4)
    resp = requests.get(logsrv.url + target, headers={"X-Forwarded-For": f"192.0.2.{marker}"}, timeout=TIMEOUT)
    line = line_of(logsrv.transfer_log, forwarded_for=f"192.0.2.{marker}")
    assert line["path"] == path and line["id"] is None and line["status"] == resp.status_code
    assert line["method"] == "GET" and line["bytes_sent"] == len(resp.content)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_tape_api_body_is_counted(logsrv, chunked):
    """Every small body the app reads is received bytes (a Tape API body once was not)."""
    marker = secrets.token_hex(4)
    body = json.dumps({"paths": [f"/absent-{marker}"]}).encode()
    resp = requests.post(
        logsrv.url + "/api/v1/archiveinfo",
        data=iter([body]) if chunked else body,
        headers={"X-Forwarded-For": f"192.0.2.{marker}"},
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200, resp.text
    line = line_of(logsrv.transfer_log, forwarded_for=f"192.0.2.{marker}")
    assert line["bytes_received"] == len(body)


def test_a_bad_path_and_long_client_text_are_bounded(logsrv):
    long_id = "x" * 3000
    resp = requests.get(logsrv.url + "/" + long_id, headers={"X-Forwarded-For": "f" * 500}, timeout=TIMEOUT)
    assert resp.status_code == 400
    line = line_of(logsrv.transfer_log, forwarded_for="f" * transfer_log.FORWARDED_MAX)
    assert line["path"] == "/" + "x" * (transfer_log.PATH_MAX - 1) and line["id"] == "x" * transfer_log.PATH_MAX


# --- tokens ---------------------------------------------------------------------------


def test_token_names_and_never_the_tokens(pool, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ro {RO} cartd\nrw {RW}\n")
    tokens.chmod(0o600)
    log = tmp_path / "transfer.log"
    srv = pool.start("tokens", PAI_TRANSFER_LOG=str(log), PAI_AUTH_TOKENS_FILE=str(tokens))
    ident = new_id()
    put = requests.put(srv.id_url(ident), data=b"token", headers={"Authorization": f"Bearer {RW}"}, timeout=10)
    assert put.status_code == 201
    get = requests.get(srv.id_url(ident), headers={"Authorization": f"Bearer {RO}"}, timeout=10)
    assert get.status_code == 200
    refused = requests.delete(srv.id_url(ident), headers={"Authorization": f"Bearer {RO}"}, timeout=10)
    assert refused.status_code == 403
    unknown = requests.get(srv.id_url(ident), headers={"Authorization": f"Bearer {RO}x"}, timeout=10)
    assert unknown.status_code == 401

    digest_name = "sha256:" + hashlib.sha256(RW.encode()).hexdigest()[:8]
    assert line_of(log, id=ident, method="PUT")["token"] == digest_name
    assert line_of(log, id=ident, method="GET", status=200)["token"] == "cartd"
    refused = line_of(log, path=f"/{ident}", method="DELETE")  # refused by the gate: no token accepted, no id read
    assert refused["status"] == 403 and refused["token"] is None and refused["id"] is None
    assert line_of(log, path=f"/{ident}", method="GET", status=401)["token"] is None
    text = log.read_text()
    assert RO not in text and RW not in text


# --- tape -----------------------------------------------------------------------------


def test_stage_wait_and_medium_on_hpss(fresh_hpss, tmp_path):
    log = tmp_path / "transfer.log"
    srv = start_tape(fresh_hpss, stage_delay=0.5, PAI_TRANSFER_LOG=str(log))
    posted, got = (str(secrets.randbits(40) | (1 << 41)) for _ in range(2))
    data = os.urandom(100_000)
    for ident in (posted, got):
        assert requests.put(srv.id_url(ident), data=data, timeout=TIMEOUT).status_code == 201
    emu_cli(srv.prefix, "purge", posted, got)

    assert requests.head(srv.id_url(posted), timeout=TIMEOUT).status_code == 204
    assert line_of(log, id=posted, method="HEAD")["medium"] == "tape"
    assert requests.post(srv.id_url(posted), timeout=TIMEOUT).status_code == 202
    line = line_of(log, id=posted, method="POST")
    assert line["medium"] == "tape" and line["stage_wait"] is not None and line["status"] == 202

    resp = requests.get(srv.id_url(got), timeout=60)
    assert resp.status_code == 200 and resp.content == data
    line = line_of(log, id=got, method="GET")
    assert line["medium"] == "tape" and line["stage_wait"] > 0
    assert line["stage_wait"] <= line["ttfb"] <= line["duration"]
    assert requests.get(srv.id_url(got), timeout=TIMEOUT).status_code == 200  # on disk now
    assert line_of(log, id=got, method="GET", medium="disk")["stage_wait"] is None


# --- where the lines go ----------------------------------------------------------------


def test_rotation_on_usr1_loses_no_line(pool, tmp_path):
    log, rotated = tmp_path / "transfer.log", tmp_path / "transfer.log.1"
    srv = pool.start("rotate", PAI_TRANSFER_LOG=str(log), PAI_WORKERS="2")
    workers = set(srv.worker_pids())
    assert len(workers) == 2
    asked = []

    def ask():
        ident = new_id()
        asked.append(ident)
        resp = requests.get(srv.id_url(ident), headers={"Connection": "close"}, timeout=TIMEOUT)
        assert resp.status_code == 404
        return ident

    before = [ask() for _ in range(5)]
    for ident in before:
        line_of(log, id=ident)
    os.rename(log, rotated)
    moved = [ask() for _ in range(5)]
    for ident in moved:  # no USR1 yet: the workers still write to the file, now under its new name
        line_of(rotated, id=ident)
    assert not log.exists()

    os.kill(srv.proc.pid, signal.SIGUSR1)  # the master reopens its logs and sends USR1 to every worker

    def every_worker_reopened():
        ask()
        return workers <= {line["pid"] for line in read_lines(log)}

    assert wait_until(every_worker_reopened, timeout=20, interval=0.02), read_lines(log)
    after = [ask() for _ in range(10)]
    for ident in after:
        line_of(log, id=ident)

    def logged():  # the ids of both files (not the start-up probes of /)
        return [line["id"] for name in (rotated, log) for line in read_lines(name) if line["id"] is not None]

    assert wait_until(lambda: set(logged()) >= set(asked), timeout=10)
    old = [line["id"] for line in read_lines(rotated) if line["id"] is not None]
    new = [line["id"] for line in read_lines(log) if line["id"] is not None]
    assert sorted(old + new) == sorted(asked)  # each request's line in exactly one of the two files
    assert set(before + moved) <= set(old) and set(after) <= set(new)
    assert oct(log.stat().st_mode & 0o777) == oct(0o640 & ~current_umask())
    assert srv.proc.poll() is None


def test_a_stop_right_after_the_requests_loses_no_line(pool, tmp_path):
    """Lines wait for a batch or the flushing thread (a quarter of a second); a worker that stops
    writes the ones still waiting as it exits (observe.flush at exit)."""
    log = tmp_path / "transfer.log"
    srv = pool.start("stop", PAI_TRANSFER_LOG=str(log), PAI_WORKERS="1")
    asked = [new_id(), new_id()]  # with the start-up probes of /, less than a batch: they wait
    with requests.Session() as session:
        for ident in asked:
            assert session.get(srv.id_url(ident), timeout=TIMEOUT).status_code == 404
    assert srv.stop() == 0
    assert sorted(line["id"] for line in read_lines(log) if line["id"] is not None) == sorted(asked)


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_default_is_stderr(pool):
    srv = pool.start("stderr")  # no PAI_TRANSFER_LOG: the test harness sends stderr to the server's log file
    ident = new_id()
    assert requests.get(srv.id_url(ident), timeout=TIMEOUT).status_code == 404
    line = line_of(lambda: srv.log_path.read_text(), id=ident)
    assert line["status"] == 404 and line["method"] == "GET"


def test_off_writes_no_line(pool):
    srv = pool.start("off", PAI_TRANSFER_LOG="off")
    ident = new_id()
    with requests.Session() as session:
        assert session.get(srv.id_url(ident), timeout=TIMEOUT).status_code == 404
        # the first exchange ended (and would have been logged) before the worker read this request
        assert session.get(srv.url + "/", timeout=TIMEOUT).status_code == 200
    log = srv.log_path.read_text()
    assert ident not in log and parsed(log) == []


def test_lines_that_cannot_be_written_fail_no_request(pool):
    """/dev/full takes no byte (ENOSPC): every request is still answered, and the error log says so once.

    The lines are written in batches of at most PIPE_BUF bytes, so the requests are enough lines for
    several writes (each line is over 200 bytes); the count is read once the service has stopped,
    which writes (tries to) every line still queued: no write can come after it."""
    srv = pool.start("full", PAI_TRANSFER_LOG="/dev/full", PAI_WORKERS="1")
    ident = new_id()
    with requests.Session() as session:
        assert session.put(srv.id_url(ident), data=b"stored all the same", timeout=TIMEOUT).status_code == 201
        for _ in range(2 * transfer_log.PIPE_BUF // 200):
            assert session.get(srv.id_url(ident), timeout=TIMEOUT).content == b"stored all the same"
    assert srv.proc.poll() is None
    assert srv.stop() == 0

    said = [line for line in srv.log_path.read_text().splitlines() if "cannot write the transfer log" in line]
    assert len(said) == 1 and "/dev/full" in said[0] and "No space left on device" in said[0], said


@pytest.mark.parametrize("case", ["no directory", "a directory"])
def test_a_transfer_log_that_cannot_be_opened_stops_the_start(tmp_path, case):
    if case == "no directory":
        target, problem = tmp_path / "nowhere" / "transfer.log", f"its directory {tmp_path / 'nowhere'} does not exist"
    else:
        target, problem = tmp_path, "it is a directory"
    env = service_env(tmp_path, PAI_PREFIX=str(tmp_path / "prefix"), PAI_TRANSFER_LOG=str(target))
    proc = subprocess.run(
        gunicorn_command(free_port()), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"pyai: error: cannot open the transfer log {target}: {problem}"]


# --- the line itself, and its documentation------------------------------------------------


def test_the_documented_table_is_the_schema():
    section = OPERATING.split("### Transfer log", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert documented == list(SCHEMA["properties"])
    assert SCHEMA["required"] == list(SCHEMA["properties"])


def test_a_line_at_every_bound_stays_under_pipe_buf():
    """The longest line (every text at its bound, escaped as \\uXXXX) is one atomic pipe write."""
    record = Record("M" * 100, "\u00e9" * 9000, "\u2028" * 9000)
    record.ident = "\u00e9" * 9000
    record.token = "issued:jwt:" + "h" * 64 + ":" + "s" * 64  # the longest name: of a token issued to a WLCG token
    record.digest = "sha512:" + "ab" * 64
    record.medium, record.stage_wait, record.first_byte = "tape", 12.5, record.started
    data = transfer_log.line(record, 599, 2**63 - 1, ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535), 2**22)
    assert len(data) < 4096 and data.endswith(b"\n") and data.count(b"\n") == 1
    VALIDATOR.validate(json.loads(data))


def test_time_is_rfc3339_utc_with_milliseconds():
    for wall, text in ((0.0, "1970-01-01T00:00:00.000Z"), (1714566896.7891, "2024-05-01T12:34:56.789Z")):
        record = Record("GET", "/1")
        record.wall = wall
        assert json.loads(transfer_log.line(record, 200, 0, None, 1))["time"] == text
