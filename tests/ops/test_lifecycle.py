"""The instance's lifecycle against the real gunicorn: drain on TERM, reload on HUP, a worker's crash.

TERM turns /readyz to 503 at once while everything is served for drain_delay
seconds, then the graceful stop lets the transfers in progress finish; HUP
re-reads the configuration and the tokens and replaces the workers without
cutting a transfer, and a HUP with a bad configuration or tokens file is refused
(one line, a metric) while the old workers serve on; a worker killed mid-upload loses only its own request, and
its temporary file is swept while the instance serves on.
"""

import os
import re
import signal
import socket
import time

import pytest
import requests
from faults.procs import children, connect, holder_of, workers
from faults.streams import BLOCK, put_head
from server import parse_response, recv_all, wait_until

TOKEN_A, TOKEN_B = "A" * 24, "B" * 24


def ready_status(srv):
    return requests.get(srv.url + "/readyz", timeout=10).status_code


def refuses_connections(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def finish(sock, rest):
    for start in range(0, len(rest), BLOCK):
        sock.sendall(rest[start : start + BLOCK])
    sock.settimeout(30)
    return parse_response(recv_all(sock))


@pytest.mark.quick
def test_term_drains_then_stops_gracefully(pool):
    srv = pool.start("drain", PAI_DRAIN_DELAY="3", PAI_WORKERS="2", GUNICORN_CMD_ARGS="--graceful-timeout 30")
    assert ready_status(srv) == 200
    ident, data = "in-flight", os.urandom(8 << 20)
    sock = connect(srv.port)
    try:
        sock.sendall(put_head(ident, len(data)) + data[: len(data) // 2])
        os.kill(srv.proc.pid, signal.SIGTERM)
        began = time.monotonic()
        assert wait_until(lambda: ready_status(srv) == 503, timeout=2, interval=0.05)
        doc = requests.get(srv.url + "/readyz", timeout=10).json()
        assert doc["checks"]["serving"] == {"ok": False, "error": "the instance is stopping"}, doc
        os.kill(srv.proc.pid, signal.SIGTERM)  # a second TERM does not cut the drain short
        # draining: new connections and new requests are still served
        assert requests.put(srv.id_url("during-drain"), data=b"late", timeout=10).status_code == 201
        assert requests.get(srv.id_url("during-drain"), timeout=10).content == b"late"
        assert requests.get(srv.url + "/healthz", timeout=10).status_code == 200
        assert time.monotonic() - began < 3, "the checks above took longer than the drain: the test proves nothing"
        # then the listeners close: new connections are refused, the upload in flight goes on
        assert wait_until(lambda: refuses_connections(srv.port), timeout=10, interval=0.05)
        assert time.monotonic() - began >= 3 - 0.1
        resp = finish(sock, data[len(data) // 2 :])
    finally:
        sock.close()
    assert resp.status == 201, resp
    assert srv.proc.wait(timeout=30) == 0
    assert (srv.prefix / ident).read_bytes() == data
    assert "draining: /readyz says 503 for 3 s" in srv.log()


def test_without_a_drain_term_stops_at_once(pool):
    srv = pool.start("no-drain", PAI_DRAIN_DELAY="0")
    os.kill(srv.proc.pid, signal.SIGTERM)
    assert srv.proc.wait(timeout=10) == 0
    assert "draining" not in srv.log()


def test_hup_rereads_configuration_and_tokens_without_cutting_a_transfer(pool, tmp_path):
    tokens_a, tokens_b = tmp_path / "tokens-a", tmp_path / "tokens-b"
    for path, token in ((tokens_a, TOKEN_A), (tokens_b, TOKEN_B)):
        path.write_text(f"rw {token}\n")
        path.chmod(0o600)
    ini = tmp_path / "archive.ini"
    ini.write_text(f"[auth]\ntokens_file = {tokens_a}\n")
    srv = pool.start("reload", ARCHIVEINTERFACE_CONFIG=str(ini), PAI_WORKERS="2")
    as_a, as_b = ({"Authorization": f"Bearer {t}"} for t in (TOKEN_A, TOKEN_B))
    assert requests.get(srv.url + "/openapi.json", headers=as_a, timeout=10).status_code == 200
    assert requests.get(srv.url + "/openapi.json", headers=as_b, timeout=10).status_code == 401
    old_workers = set(workers(srv, 2))

    ident, data = "across-hup", os.urandom(8 << 20)
    sock = connect(srv.port)
    try:
        head = put_head(ident, len(data), extra=(f"Authorization: Bearer {TOKEN_A}",))
        sock.sendall(head + data[: len(data) // 2])
        assert wait_until(lambda: any(p.stat().st_size for p in srv.settled_temp_files()), timeout=30)
        ini.write_text(f"[auth]\ntokens_file = {tokens_b}\n")  # the configuration names another tokens file
        os.kill(srv.proc.pid, signal.SIGHUP)

        def reloaded():
            a = requests.get(srv.url + "/openapi.json", headers=as_a, timeout=10).status_code
            b = requests.get(srv.url + "/openapi.json", headers=as_b, timeout=10).status_code
            return (a, b) == (401, 200)

        assert wait_until(reloaded, timeout=60)
        assert set(children(srv.proc.pid)) - old_workers, "HUP started no new worker"
        resp = finish(sock, data[len(data) // 2 :])
    finally:
        sock.close()
    assert resp.status == 201, resp  # authenticated before the reload: the transfer completes
    got = requests.get(srv.id_url(ident), headers=as_b, timeout=30)
    assert got.status_code == 200 and got.content == data


REFUSED = "reload refused: "
STILL_SERVING = "; still serving with the previous configuration"


@pytest.mark.parametrize("broken", ["ini", "tokens"])
def test_hup_with_a_bad_configuration_is_refused_and_the_workers_serve_on(pool, tmp_path, broken):
    """A HUP after a bad value in the INI, or a bad line in the tokens file: one line says the reload
    was refused, the same workers serve on (none started, none stopped), the refusal is counted; the
    next HUP, once the file is fixed, applies."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"rw {TOKEN_A}\n")
    tokens.chmod(0o600)
    ini = tmp_path / "archive.ini"
    good_ini = f"[auth]\ntokens_file = {tokens}\n[archive]\nreceive_timeout = 30\n"
    ini.write_text(good_ini)
    srv = pool.start("refused", ARCHIVEINTERFACE_CONFIG=str(ini), PAI_WORKERS="2")
    as_a, as_b = ({"Authorization": f"Bearer {t}"} for t in (TOKEN_A, TOKEN_B))
    old_workers = set(workers(srv, 2))
    booted = srv.log().count("Booting worker")

    if broken == "ini":
        ini.write_text(good_ini.replace("receive_timeout = 30", "receive_timeout = soon"))
        reason = f"bad value 'soon' for [archive] receive_timeout in {ini}"
    else:
        tokens.write_text(f"rw {TOKEN_A}\nthis line is not a token\n")
        reason = f"bad tokens file {tokens}"
    os.kill(srv.proc.pid, signal.SIGHUP)
    assert wait_until(lambda: REFUSED in srv.log(), timeout=30), srv.log(3000)
    (line,) = [line for line in srv.log().splitlines() if REFUSED in line]
    assert reason in line and line.endswith(STILL_SERVING), line
    assert "Traceback" not in srv.log()
    assert requests.get(srv.url + "/openapi.json", headers=as_a, timeout=10).status_code == 200
    assert set(children(srv.proc.pid)) == old_workers
    assert srv.log().count("Booting worker") == booted  # no worker started, none replaced
    scrape = requests.get(srv.url + "/metrics", headers=as_a, timeout=10).text
    assert re.search(r"^pyai_reloads_refused_total 1\.0$", scrape, re.M), scrape

    tokens.write_text(f"rw {TOKEN_B}\n")  # fixed, with another token: the reload shows it applied
    ini.write_text(good_ini)
    os.kill(srv.proc.pid, signal.SIGHUP)

    def reloaded():
        a = requests.get(srv.url + "/openapi.json", headers={**as_a, "Connection": "close"}, timeout=10)
        b = requests.get(srv.url + "/openapi.json", headers={**as_b, "Connection": "close"}, timeout=10)
        return (a.status_code, b.status_code) == (401, 200)

    assert wait_until(reloaded, timeout=60), srv.log(3000)
    assert wait_until(lambda: not set(children(srv.proc.pid)) & old_workers, timeout=30), "the old workers stayed"
    assert srv.log().count(REFUSED) == 1


def test_a_crashed_workers_upload_is_swept_while_serving(pool):
    srv = pool.start("crash-sweep", PAI_WORKERS="2", PAI_SWEEP_MIN_AGE="1")
    pids = workers(srv, 2)
    doomed, survivor = (connect(srv.port) for _ in range(2))
    data = os.urandom(4 << 20)
    try:
        doomed.sendall(put_head("doomed", 64 << 20) + data)
        assert wait_until(lambda: len([p for p in srv.settled_temp_files() if p.stat().st_size]) == 1, timeout=30)
        victim = holder_of(doomed, pids)
        assert victim is not None
        # an upload on the other worker, which must survive its neighbour's crash and the sweep
        other = None
        for _ in range(20):
            survivor.sendall(put_head("survivor", 2 * len(data)) + data)
            if holder_of(survivor, pids) not in (None, victim):
                other = survivor
                break
            survivor.close()
            survivor = connect(srv.port)
        assert other is not None, "no connection reached the other worker"
        assert wait_until(lambda: len([p for p in srv.settled_temp_files() if p.stat().st_size]) == 2, timeout=30)
        doomed_file = next(p for p in srv.settled_temp_files() if p.stat().st_size >= len(data))
        # Both files older than sweep_min_age, whenever the sweep comes: the survivor's stays
        # because its upload holds it, not because it is young.
        an_hour_ago = time.time() - 3600
        for path in srv.settled_temp_files():
            os.utime(path, (an_hour_ago, an_hour_ago))
        os.kill(victim, signal.SIGKILL)
        # the dead upload's file goes without a restart; the live one (locked) stays
        assert wait_until(lambda: len(srv.temp_files()) == 1, timeout=20), srv.temp_files()
        assert srv.proc.poll() is None
        resp = finish(survivor, data)
    finally:
        doomed.close()
        survivor.close()
    assert resp.status == 201, resp
    assert (srv.prefix / "survivor").read_bytes() == data + data
    assert not (srv.prefix / "doomed").exists()
    assert not doomed_file.exists()
    # The doomed upload's file, and any of a retry above that reached the victim and that it had
    # not yet cleared away when it was killed (seen once in CI: "removed 2").
    assert re.search(r"removed [1-9][0-9]* stale temporary file\(s\)", srv.log())


def test_stale_temporary_files_are_swept_every_interval(pool):
    srv = pool.start("interval", PAI_SWEEP_INTERVAL="1", PAI_SWEEP_MIN_AGE="60")
    stale = srv.prefix / ".pyai-tmp-left-by-a-crash"
    stale.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    young = srv.prefix / ".pyai-tmp-young"
    young.write_bytes(b"y")
    assert wait_until(lambda: not stale.exists(), timeout=20)
    assert young.exists()  # younger than sweep_min_age
    assert requests.get(srv.url + "/readyz", timeout=10).status_code == 200


def test_a_killed_instances_upload_is_swept_soon_after_the_restart(pool):
    """SIGKILL of the whole service mid-upload, then a restart at once: the start-up sweep
    finds the dead upload's file younger than sweep_min_age and leaves it; the sweep that
    comes sweep_min_age after the start takes it (not the next sweep_interval, an hour
    away), and leaves the upload the new instance is receiving."""
    srv = pool.start("killed", PAI_WORKERS="2")
    data = os.urandom(4 << 20)
    sock = connect(srv.port)
    try:
        sock.sendall(put_head("doomed", 64 << 20) + data)
        assert wait_until(lambda: any(p.stat().st_size for p in srv.settled_temp_files()), timeout=30)
        os.killpg(srv.proc.pid, signal.SIGKILL)  # master and workers at once: no arbiter sweeps
        srv.proc.wait(timeout=10)
    finally:
        sock.close()
    (leftover,) = srv.temp_files()

    again = pool.start("restarted", PAI_PREFIX=str(srv.prefix), PAI_SWEEP_MIN_AGE="5", PAI_SWEEP_INTERVAL="3600")
    live = connect(again.port)
    try:
        live.sendall(put_head("alive", 2 * len(data)) + data)
        assert wait_until(lambda: len(again.temp_files()) == 2, timeout=30), again.temp_files()
        # the defect's condition: the start-up sweep found it too young (5 s is far more than a start takes)
        assert leftover.exists(), "the start-up sweep took the leftover: the test proves nothing"
        assert wait_until(lambda: not leftover.exists(), timeout=30), again.temp_files()
        assert len(again.temp_files()) == 1  # the live upload's (locked) file stays
        resp = finish(live, data)
    finally:
        live.close()
    assert resp.status == 201, resp
    assert (again.prefix / "alive").read_bytes() == data + data
    assert not (again.prefix / "doomed").exists()
    assert "removed 1 stale temporary file(s)" in again.log()
