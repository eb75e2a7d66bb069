"""The sideband database going away and coming back, and credentials it refuses."""

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from server import assert_error, free_port, wait_until

from .mariadb import SERVICE_PASSWORD, SERVICE_USER, SamDB, start_mariadb

SERVE = str(Path(sys.executable).parent / "pacifica-archiveinterface")


def new_id():
    return str(secrets.randbits(40) | (1 << 41))


@pytest.fixture
def own_mariadb(tmp_path):
    """A MariaDB of this test alone, so it can be stopped and restarted."""
    db = start_mariadb(tmp_path / "mariadb")
    try:
        yield db
    finally:
        db.stop()


def head(srv, ident):
    return requests.head(srv.id_url(ident), timeout=20)


def answers(srv, ident):
    """True once a HEAD answers 204 and no worker's last answer that asked the database was a 503.

    A worker answers 503 without trying for RETRY_CONNECT_AFTER seconds after a connection
    attempt failed; the HEADs of the polls that call this take each one back in its turn.
    What each worker answered is in the transfer log (its JSON lines, in the server's log):
    HEAD and POST of a stored file ask the database (of a missing one, 404, they do not).
    """
    if head(srv, ident).status_code != 204:
        return False
    last = {}  # pid -> the status of its last answer that asked the database
    for line in srv.log().splitlines():
        if line.startswith('{"time"'):
            record = json.loads(line)
            if record["method"] in ("HEAD", "POST") and record["status"] != 404:
                last[record["pid"]] = record["status"]
    return 503 not in last.values()


def test_database_stopped_mid_run_gives_503_and_recovers(server_pool, request, own_mariadb):
    pool = server_pool(request, "hsmsideband", mariadb=own_mariadb)
    samdb = SamDB(own_mariadb)
    srv = pool.start("outage", PAI_SIDEBAND_RETRY_AFTER="7", PAI_WORKERS="2")
    ident, data = new_id(), os.urandom(5000)
    assert requests.put(srv.id_url(ident), data=data, timeout=10).status_code == 201
    samdb.record(srv.stored_path(ident), online=False)
    assert head(srv, ident).headers["X-Pacifica-File-Storage-Media"] == "tape"

    own_mariadb.stop()
    started = time.monotonic()
    resp = head(srv, ident)
    assert time.monotonic() - started < 5, "HEAD waited for the dead database"
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "7"
    body = assert_error(requests.post(srv.id_url(ident), timeout=20), 503, srv.prefix)
    assert "sideband database" in body["message"], body
    assert str(own_mariadb.port) not in body["message"]  # no server details for clients
    # the file system is up: reads, writes, deletes and a HEAD of a missing id still work
    assert requests.get(srv.id_url(ident), timeout=10).content == data
    other = new_id()
    assert requests.put(srv.id_url(other), data=b"while down", timeout=10).status_code == 201
    assert requests.delete(srv.id_url(other), timeout=10).status_code == 200
    assert head(srv, new_id()).status_code == 404
    assert requests.get(srv.url + "/", timeout=10).status_code == 200

    # a service started while the database is down starts, and answers 503 meanwhile
    late = pool.start("late")
    assert "unavailable at start-up" in late.log()
    late_id = new_id()
    assert requests.put(late.id_url(late_id), data=b"late", timeout=10).status_code == 201
    assert head(late, late_id).status_code == 503

    own_mariadb.start()
    assert wait_until(lambda: answers(srv, ident), timeout=20)
    assert head(srv, ident).headers["X-Pacifica-File-Storage-Media"] == "tape"
    assert requests.post(srv.id_url(ident), timeout=10).status_code == 202
    samdb.set_online(srv.stored_path(ident), True)
    assert requests.post(srv.id_url(ident), timeout=10).status_code == 200
    assert wait_until(lambda: answers(late, late_id), timeout=20)
    assert "the sideband database" in srv.log() and "answers again" in srv.log()
    assert "Traceback" not in srv.log() + late.log()

    # the password changes under a running service: 503 saying so, never a traceback
    root = own_mariadb.root()
    try:
        root.execute_sql(f"ALTER USER '{SERVICE_USER}'@'127.0.0.1' IDENTIFIED BY 'changed-elsewhere'")
        for (conn,) in root.execute_sql(
            "SELECT id FROM information_schema.processlist WHERE user = %s", (SERVICE_USER,)
        ).fetchall():
            root.execute_sql(f"KILL {int(conn)}")
        resp = head(srv, ident)
        body = assert_error(requests.post(srv.id_url(ident), timeout=20), 503)
        assert resp.status_code == 503
        assert "refuses the configured user" in body["message"], body
        root.execute_sql(f"ALTER USER '{SERVICE_USER}'@'127.0.0.1' IDENTIFIED BY %s", (SERVICE_PASSWORD,))
    finally:
        root.close()
    assert wait_until(lambda: answers(srv, ident), timeout=20)
    assert "Traceback" not in srv.log()


def test_wrong_password_is_a_clear_start_up_error(fresh_sideband, mariadb):
    with pytest.raises(RuntimeError) as info:
        fresh_sideband.start("denied", PAI_SIDEBAND_PASSWORD="not-the-password")
    message = str(info.value)
    assert "pyai: error: the sideband database samdb on 127.0.0.1:" in message, message
    assert f"refused user '{SERVICE_USER}'" in message and "Access denied" in message, message
    assert "Traceback" not in message


def test_unknown_schema_is_a_clear_start_up_error(fresh_sideband):
    with pytest.raises(RuntimeError) as info:
        fresh_sideband.start("noschema", PAI_SIDEBAND_SCHEMA="nosuchdb")
    message = str(info.value)
    assert "pyai: error: the sideband database nosuchdb" in message, message
    assert "Traceback" not in message


def test_cli_wrong_password_one_line_exit_2(mariadb, tmp_path):
    mount = tmp_path / "mnt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAI_", "PYAI_"))}
    env.update(mariadb.settings(), PAI_SIDEBAND_PASSWORD="wrong", PAI_SAM_QFS_PREFIX=str(mount), HOME=str(tmp_path))
    command = [SERVE, "-t", "hsmsideband", "-p", str(free_port()), "--prefix", str(mount / "archive")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("pyai: error: the sideband database"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_readiness_follows_the_databases(server_pool, request, own_mariadb):
    """/readyz names the sideband database and the Tape API's store, which are down together here."""
    store = own_mariadb.tape_store("tapestore")
    pool = server_pool(request, "hsmsideband", mariadb=own_mariadb)

    def checks(srv):
        resp = requests.get(srv.url + "/readyz", timeout=20)
        return resp.status_code, resp.json()["checks"]

    srv = pool.start("ready", PAI_TAPE_STORE=store)
    status, found = checks(srv)
    assert status == 200, found
    assert {"serving", "prefix", "sideband_database", "stage_store"} <= set(found)
    assert found["sideband_database"]["seconds"] >= 0 and found["stage_store"]["seconds"] >= 0
    own_mariadb.stop()

    def both_down():  # each worker keeps its last answer half a second: ask until one has news
        status, found = checks(srv)
        return found if status == 503 and not found["sideband_database"]["ok"] else None

    found = wait_until(both_down, timeout=20)
    assert found, checks(srv)
    assert "sideband database" in found["sideband_database"]["error"]
    assert found["stage_store"]["ok"] is False and "store" in found["stage_store"]["error"]
    assert found["prefix"]["ok"] is True
    assert str(own_mariadb.port) not in str(found)
    own_mariadb.start()
    assert wait_until(lambda: checks(srv)[0] == 200, timeout=30)
