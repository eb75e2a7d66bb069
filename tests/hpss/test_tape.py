"""The HPSS backend over HTTP, on the emulator: the tape workflow, staging, outages, login, concurrency."""

import concurrent.futures
import hashlib
import os
import secrets
import socket
import sys
import time
from pathlib import Path

import pytest
import requests
from emulator import emu_cli, stages
from server import assert_error, free_port, wait_until

SERVE = str(Path(sys.executable).parent / "pacifica-archiveinterface")


def new_id():
    return str(secrets.randbits(40) | (1 << 41))


def head(srv, ident):
    return requests.head(srv.id_url(ident), timeout=10)


@pytest.mark.quick
def test_tape_workflow(tape):
    ident, data = new_id(), os.urandom(200_000)
    size = len(data)
    assert requests.put(tape.id_url(ident), data=data, timeout=30).status_code == 201
    h = head(tape, ident).headers
    assert h["X-Pacifica-File-Storage-Media"] == "disk"
    assert h["X-Pacifica-Bytes-Per-Level"] == repr((size, 0, 0, 0, 0))
    assert h["X-Pacifica-File"] == str(tape.stored_path(ident))

    emu_cli(tape.prefix, "purge", ident)
    h = head(tape, ident).headers
    assert h["X-Pacifica-File-Storage-Media"] == "tape"
    assert h["X-Pacifica-Bytes-Per-Level"] == repr((0, size, 0, 0, 0))
    assert h["X-Content-Length"] == str(size)
    assert stages(tape, ident) == 0, "HEAD started a stage"

    started = time.monotonic()
    resp = requests.post(tape.id_url(ident), timeout=10)
    assert time.monotonic() - started < 0.8, "POST waited for the tape"
    assert resp.status_code == 202
    assert resp.json() == {"message": "File is being staged", "file": ident}
    assert wait_until(lambda: head(tape, ident).headers["X-Pacifica-File-Storage-Media"] == "disk", timeout=10)
    assert head(tape, ident).headers["X-Pacifica-Bytes-Per-Level"] == repr((size, size, 0, 0, 0))
    resp = requests.post(tape.id_url(ident), timeout=10)
    assert resp.status_code == 200
    assert resp.json() == {"message": "File was staged", "file": ident}
    got = requests.get(tape.id_url(ident), timeout=30)
    assert got.status_code == 200 and got.content == data
    assert stages(tape, ident) == 1  # the POST's; neither the second POST nor the GET asked again


def test_get_of_a_tape_file_waits_for_the_stage(tape):
    ident, data = new_id(), os.urandom(5000)
    assert requests.put(tape.id_url(ident), data=data, timeout=30).status_code == 201
    emu_cli(tape.prefix, "purge", ident)
    started = time.monotonic()
    got = requests.get(tape.id_url(ident), timeout=30)
    assert got.status_code == 200 and got.content == data
    assert time.monotonic() - started >= 0.8
    assert head(tape, ident).headers["X-Pacifica-File-Storage-Media"] == "disk"


def test_get_of_a_tape_file_answers_503_when_configured(fresh_hpss):
    srv = fresh_hpss.start("nowait", PAI_HPSS_STAGE_TIMEOUT="0", PAI_HPSS_RETRY_AFTER="7")
    emu_cli(srv.prefix, "set-stage-delay", "1")
    ident, data = new_id(), os.urandom(5000)
    assert requests.put(srv.id_url(ident), data=data, timeout=30).status_code == 201
    emu_cli(srv.prefix, "purge", ident)
    resp = requests.get(srv.id_url(ident), timeout=10)
    body = assert_error(resp, 503, srv.prefix)
    assert resp.headers["Retry-After"] == "7"
    assert "tape" in body["message"]
    # the refused GET started the stage: the file comes back by itself
    assert wait_until(lambda: requests.get(srv.id_url(ident), timeout=10).status_code == 200, timeout=10)
    assert requests.get(srv.id_url(ident), timeout=10).content == data


def test_ranges_and_byte_range_read_through_hpss(tape):
    ident, data = new_id(), os.urandom(3_000_000)
    assert requests.put(tape.id_url(ident), data=data, timeout=30).status_code == 201
    url = tape.id_url(ident)
    part = requests.get(url, headers={"Range": "bytes=1500000-1500099"}, timeout=10)
    assert part.status_code == 206 and part.content == data[1500000:1500100]
    assert requests.get(url, headers={"Range": "bytes=-5"}, timeout=10).content == data[-5:]
    assert requests.get(url + "?byte_range=100-200", timeout=10).content == data[100:200]
    assert_error(requests.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=10), 416)


def test_slow_core_server_gives_503_and_recovers(fresh_hpss):
    srv = fresh_hpss.start("slow", PAI_HPSS_ACCEPT_LATENCY="0.2", PAI_HPSS_PING_INTERVAL="0")
    ident = new_id()
    assert requests.put(srv.id_url(ident), data=b"x", timeout=10).status_code == 201
    emu_cli(srv.prefix, "set-latency", "0.5")
    resp = head(srv, ident)
    assert resp.status_code == 503
    body = assert_error(requests.get(srv.id_url(ident), timeout=10), 503, srv.prefix)
    assert "HPSS" in body["message"] and "slow" in body["message"]
    assert requests.get(srv.url + "/", timeout=10).status_code == 200  # the service itself is up
    emu_cli(srv.prefix, "set-latency", "0")
    assert wait_until(lambda: head(srv, ident).status_code == 204, timeout=10)
    assert requests.get(srv.id_url(ident), timeout=10).content == b"x"


def test_core_server_down_gives_503_and_recovers(fresh_hpss):
    srv = fresh_hpss.start("down", PAI_HPSS_PING_INTERVAL="0.2", PAI_HPSS_RETRY_AFTER="5")
    ident = new_id()
    assert requests.put(srv.id_url(ident), data=b"up", timeout=10).status_code == 201
    emu_cli(srv.prefix, "down")
    assert wait_until(lambda: requests.get(srv.id_url(ident), timeout=10).status_code == 503, timeout=10)
    resp = requests.put(srv.id_url(new_id()), data=b"no", timeout=10)
    body = assert_error(resp, 503, srv.prefix)
    assert "HPSS" in body["message"] and resp.headers["Retry-After"] == "5"
    emu_cli(srv.prefix, "up")
    assert wait_until(lambda: requests.get(srv.id_url(ident), timeout=10).status_code == 200, timeout=10)


def test_readiness_follows_the_core_server(fresh_hpss):
    srv = fresh_hpss.start("ready", PAI_HPSS_ACCEPT_LATENCY="0.2")

    def readiness():
        resp = requests.get(srv.url + "/readyz", timeout=10)
        return resp.status_code, resp.json()["checks"]["hpss"]

    status, hpss = readiness()
    assert status == 200 and hpss["ok"] is True and 0 <= hpss["seconds"] < 0.2, hpss
    emu_cli(srv.prefix, "set-latency", "0.5")
    assert wait_until(lambda: readiness()[0] == 503, timeout=10)
    status, hpss = readiness()
    assert hpss["ok"] is False and hpss["seconds"] >= 0.5 and "too slow" in hpss["error"], hpss
    emu_cli(srv.prefix, "set-latency", "0")
    emu_cli(srv.prefix, "down")
    assert wait_until(lambda: "does not answer" in readiness()[1].get("error", ""), timeout=10)
    assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200  # alive, not ready
    emu_cli(srv.prefix, "up")
    assert wait_until(lambda: readiness()[0] == 200, timeout=10)


def test_login_failure_is_a_clear_start_up_error(fresh_hpss, tmp_path):
    prefix = tmp_path / "denied"
    prefix.mkdir()
    emu_cli(prefix, "deny-login")
    with pytest.raises(RuntimeError) as info:
        fresh_hpss.start("denied", PAI_PREFIX=str(prefix), PAI_HPSS_USER="archiver")
    message = str(info.value)
    assert "HPSS login as 'archiver'" in message and "Operation not permitted" in message
    assert "Traceback" not in message


def test_cli_serves_hpss_under_the_prefix(fresh_hpss, tmp_path):
    prefix = tmp_path / "cli-prefix"  # created by the service
    port = free_port()
    command = [SERVE, "-t", "hpss", "-p", str(port), "-a", "127.0.0.1", "--prefix", str(prefix)]
    srv = fresh_hpss.start("cli", command=command, port=port, prefix=prefix, PAI_PREFIX=None, PAI_BACKEND_TYPE=None)
    assert requests.put(srv.id_url("12345"), data=b"via cli", timeout=10).status_code == 201
    assert (prefix / "39" / "3039").read_bytes() == b"via cli"
    assert (prefix / ".hpss-emu").is_dir()
    assert_error(requests.put(srv.id_url("name.txt"), data=b"x", timeout=10), 400)


def test_patch_within_the_prefix(tape):
    src = tape.prefix / "incoming" / f"f-{new_id()}"
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(b"moved in")
    ident = new_id()
    resp = requests.patch(tape.id_url(ident), json={"path": str(src)}, timeout=10)
    assert resp.status_code == 200 and resp.json() == {"message": "File Moved Successfully"}
    assert not src.exists()
    assert requests.get(tape.id_url(ident), timeout=10).content == b"moved in"
    assert tape.stored_path(ident).stat().st_mode & 0o777 == 0o444
    outside = tape.workdir / "outside-file"
    outside.write_bytes(b"no")
    assert_error(requests.patch(tape.id_url(new_id()), json={"path": str(outside)}, timeout=10), 403)
    assert outside.exists()


def test_delete_a_file_on_tape(tape):
    ident = new_id()
    assert requests.put(tape.id_url(ident), data=b"bye", timeout=10).status_code == 201
    emu_cli(tape.prefix, "purge", ident)
    assert requests.delete(tape.id_url(ident), timeout=10).status_code == 200
    assert head(tape, ident).status_code == 404
    assert not tape.stored_path(ident).exists()


def test_interrupted_put_leaves_nothing(tape):
    ident = new_id()
    with socket.create_connection(("127.0.0.1", tape.port), timeout=10) as sock:
        sock.sendall(f"PUT /{ident} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode() + b"only a little")
    assert wait_until(lambda: tape.temp_files() == [] and not tape.stored_path(ident).exists(), timeout=30)
    assert head(tape, ident).status_code == 404


def test_concurrent_gets_and_puts_from_several_workers(fresh_hpss):
    srv = fresh_hpss.start("busy", PAI_WORKERS="3", PAI_THREADS="8")
    files = {new_id(): os.urandom(100_000 + i * 1000) for i in range(24)}

    def put(item):
        ident, data = item
        return requests.put(srv.id_url(ident), data=data, timeout=60).status_code

    def get(ident):
        return hashlib.sha256(requests.get(srv.id_url(ident), timeout=60).content).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        assert set(pool.map(put, files.items())) == {201}
        digests = dict(zip(files, pool.map(get, list(files) * 1)))
        assert digests == {i: hashlib.sha256(d).hexdigest() for i, d in files.items()}
        # racing PUTs of one id: exactly one wins, from whichever worker
        same = new_id()
        bodies = [os.urandom(50_000) for _ in range(8)]
        codes = list(pool.map(put, [(same, b) for b in bodies]))
    assert sorted(codes) == [201] + [409] * 7
    stored = srv.stored_path(same).read_bytes()
    assert stored in bodies and requests.get(srv.id_url(same), timeout=10).content == stored
    assert srv.temp_files() == []
