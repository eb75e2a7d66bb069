"""Two instances of one archive on one MariaDB store: a request made through one is polled,
and completed, through the other, also after the first is gone (its claims expire)."""

import pytest
import requests
from emulator import HAS_HPSS
from playhouse.db_url import connect
from tape_client import TIMEOUT, archiveinfo, emu, kill, poll, stage, states, tape_settings, wait_done

from pyai.tape import models

from .test_hpss import on_tape


@pytest.fixture(scope="module")
def store_url(mariadb):
    return mariadb.tape_store("tapestore")


def test_tables_of_an_older_pyai_get_the_new_indexes(mariadb, posix_pool):
    """MariaDB has no CREATE INDEX IF NOT EXISTS: an index the tables lack is still made, at
    every start, and a start that finds it made is no failure."""
    url = mariadb.tape_store("tapeolder")
    db = connect(url)
    with db.connection_context():
        models.database.initialize(db)
        db.create_tables(models.MODELS)
        db.execute_sql("DROP INDEX tape_stage_request_created_at ON tape_stage_request")
    for name in ("older", "again"):
        srv = posix_pool.start(name, **tape_settings(PAI_TAPE_STORE=url))
        assert stage(srv, ["/x-older"]).status_code == 201
        srv.stop()
        with db.connection_context():
            indexes = {index.name for index in db.get_indexes("tape_stage_request")}
        assert "tape_stage_request_created_at" in indexes, indexes


def test_two_instances_share_requests(fresh_hpss, store_url, tmp_path):
    if not HAS_HPSS:
        pytest.skip("no HPSS emulator")
    prefix = str(tmp_path / "shared-prefix")
    settings = tape_settings(PAI_TAPE_STORE=store_url, PAI_PREFIX=prefix, PAI_HPSS_PING_INTERVAL="0")
    first = fresh_hpss.start("first", prefix=prefix, **settings)
    second = fresh_hpss.start("second", prefix=prefix, **settings)
    emu(first, "set-stage-delay", "2")
    paths = on_tape(first, 2)
    request_id = stage(first, paths).json()["requestId"]
    assert poll(second, request_id).status_code == 200
    assert sorted(entry["path"] for entry in poll(second, request_id).json()["files"]) == sorted(paths)
    kill(first)  # whatever it had claimed, the second takes over
    doc = wait_done(second, request_id, timeout=40)
    assert states(doc) == dict.fromkeys(paths, "COMPLETED")
    assert [entry["locality"] for entry in archiveinfo(second, paths).json()] == ["DISK_AND_TAPE"] * 2
    assert requests.delete(f"{second.url}/api/v1/stage/{request_id}", timeout=TIMEOUT).status_code == 200
    assert "the tape executor failed" not in second.log()  # its claims and sweeps are MariaDB's SQL too
