"""The Tape API's bounds, over HTTP on posix: capped lists, paths no store can hold, what a stage
decides at once, finished requests that expire and a per-token bound on the rows it keeps."""

import collections
import sqlite3
import threading
import uuid

import pytest
import requests
from server import wait_until
from tape_client import API, TIMEOUT, assert_problem, poll, stage, states, tape_settings

SURROGATE = b'"/\\ud800"'  # JSON for a lone surrogate: a str Python holds but no UTF-8 can carry


def new_id():
    return f"b-{uuid.uuid4().hex[:12]}"


def post(srv, where, body):
    return requests.post(
        srv.url + API + where, data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT
    )


def store_rows(srv):
    """The rows of the server's SQLite store: (requests, files)."""
    with sqlite3.connect(srv.prefix / ".pyai-state" / "tape-requests.sqlite3") as db:
        return tuple(
            db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("tape_stage_request", "tape_stage_file")
        )


def test_a_lone_surrogate_in_a_path_is_a_400_problem(posix):
    ident = new_id()
    assert requests.put(posix.id_url(ident), data=b"x", timeout=TIMEOUT).status_code == 201
    request_id = stage(posix, [f"/{ident}"]).json()["requestId"]
    assert_problem(post(posix, "/stage", b'{"files": [{"path": ' + SURROGATE + b"}]}"), 400)
    for where in ("/archiveinfo", f"/stage/{request_id}/cancel", f"/release/{request_id}", "/release/no-such-id"):
        assert_problem(post(posix, where, b'{"paths": [' + SURROGATE + b"]}"), 400)
    assert "Traceback" not in posix.log()


@pytest.mark.parametrize("where", ["/stage/{id}/cancel", "/release/{id}", "/release/placeholder"])
def test_cancel_and_release_of_more_than_max_files_paths_are_refused(posix, where):
    ident = new_id()
    assert requests.put(posix.id_url(ident), data=b"x", timeout=TIMEOUT).status_code == 201
    request_id = stage(posix, [f"/{ident}"]).json()["requestId"]
    paths = [f"/{ident}"] + [f"/{new_id()}" for _ in range(20)]  # the limit is 20
    resp = requests.post(posix.url + API + where.format(id=request_id), json={"paths": paths}, timeout=TIMEOUT)
    assert "too many paths" in assert_problem(resp, 400)["detail"]
    ok = requests.post(posix.url + API + where.format(id=request_id), json={"paths": paths[:20]}, timeout=TIMEOUT)
    assert ok.status_code in (200, 400)  # cancel: 400 for paths outside the request, not for their number
    assert "too many" not in ok.text


def test_archiveinfo_reads_no_more_than_max_archiveinfo_paths(posix):
    """Past the limit (5) a path is not even looked at: one the store could not hold is no error."""
    paths = [f"/{new_id()}" for _ in range(5)]
    body = ('{"paths": [' + ", ".join(f'"{path}"' for path in paths) + ", ").encode() + SURROGATE + b"]}"
    resp = post(posix, "/archiveinfo", body)
    assert resp.status_code == 200, resp.text
    assert [entry["path"] for entry in resp.json()] == paths


def test_the_store_indexes_what_release_and_the_expiry_match(posix):
    ident = new_id()
    assert requests.put(posix.id_url(ident), data=b"x", timeout=TIMEOUT).status_code == 201
    assert stage(posix, [f"/{ident}"]).status_code == 201
    with sqlite3.connect(posix.prefix / ".pyai-state" / "tape-requests.sqlite3") as db:
        indexed = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"tape_stage_request_created_at", "tape_stage_file_target_key"} <= indexed, indexed


def test_a_stage_decides_at_once_what_it_can(posix_pool):
    """A path naming no stored file is FAILED, and one on disk COMPLETED, when the request is made:
    thousands of bogus paths queued before it do not hold a real file back."""
    srv = posix_pool.start("at-once", **tape_settings(PAI_TAPE_MAX_FILES="100"))
    for number in range(20):
        resp = stage(srv, [f"/{number:09d}{index:03d}" for index in range(100)])
        assert resp.status_code == 201, resp.text
    ident = new_id()
    assert requests.put(srv.id_url(ident), data=b"on disk", timeout=TIMEOUT).status_code == 201
    request_id = stage(srv, [f"/{ident}", "/000000001"]).json()["requestId"]
    doc = poll(srv, request_id).json()  # the first poll, right after the 201
    assert states(doc) == {f"/{ident}": "COMPLETED", "/000000001": "FAILED"}, doc
    assert "completedAt" in doc
    entry = {e["path"]: e for e in doc["files"]}["/000000001"]
    assert entry["error"] == "no file is stored under this id"


def test_finished_requests_expire_and_a_token_keeps_a_bounded_number_of_rows(posix_pool):
    srv = posix_pool.start(
        "bounded",
        **tape_settings(PAI_TAPE_MAX_FILES="20", PAI_TAPE_MAX_KEPT_FILES="30", PAI_TAPE_REQUEST_EXPIRY="1"),
    )
    bogus = [f"/{new_id()}" for _ in range(20)]  # FAILED at once: no request of these stays open
    first = stage(srv, bogus)
    assert first.status_code == 201
    refused = stage(srv, bogus[:11])  # 20 kept + 11 > 30
    assert "too many files kept" in assert_problem(refused, 429)["detail"]
    assert int(refused.headers["Retry-After"]) > 0
    assert stage(srv, bogus[:10]).status_code == 201  # 30: at the bound, not over it
    assert store_rows(srv) == (2, 30)
    # a second after they finished, the requests are forgotten: 404, their rows gone, room again
    assert wait_until(lambda: poll(srv, first.json()["requestId"]).status_code == 404, timeout=10)
    assert wait_until(lambda: store_rows(srv) == (0, 0), timeout=10), store_rows(srv)
    assert stage(srv, bogus).status_code == 201


def test_releases_and_stages_of_two_clients_never_fail_each_other(posix_pool):
    """Releases (a read, then a write, in one transaction) while another client stages: every
    answer is a success, none a 503 "database is locked"."""
    srv = posix_pool.start("together", **tape_settings(PAI_TAPE_MAX_FILES="200", PAI_TAPE_MAX_OPEN_REQUESTS="1000"))
    idents = [new_id() for _ in range(5)]
    for ident in idents:
        assert requests.put(srv.id_url(ident), data=b"x", timeout=TIMEOUT).status_code == 201
    paths = [f"/{ident}" for ident in idents] + [f"/{new_id()}" for _ in range(195)]
    assert stage(srv, paths).status_code == 201
    statuses, stop = collections.Counter(), threading.Event()

    def other_client():
        with requests.Session() as session:
            while not stop.is_set():
                body = {"files": [{"path": f"/{new_id()}"} for _ in range(50)]}
                statuses[session.post(srv.url + API + "/stage", json=body, timeout=TIMEOUT).status_code] += 1

    thread = threading.Thread(target=other_client)
    thread.start()
    try:
        with requests.Session() as session:
            for _ in range(40):
                resp = session.post(srv.url + API + "/release/placeholder", json={"paths": paths}, timeout=TIMEOUT)
                statuses[resp.status_code] += 1
    finally:
        stop.set()
        thread.join()
    assert set(statuses) == {200, 201} and statuses[200] == 40, statuses


def test_a_request_is_kept_while_it_pins_a_file(posix_pool):
    """A pin (diskLifetime) decides what a release may evict: its request outlives the expiry
    until it is released."""
    srv = posix_pool.start("pinned", **tape_settings(PAI_TAPE_REQUEST_EXPIRY="1"))
    ident = new_id()
    assert requests.put(srv.id_url(ident), data=b"x", timeout=TIMEOUT).status_code == 201
    pinned = stage(srv, [f"/{ident}"], diskLifetime="PT1H").json()["requestId"]
    unpinned = stage(srv, [f"/{new_id()}"]).json()["requestId"]  # FAILED at once: it pins nothing
    assert wait_until(lambda: poll(srv, unpinned).status_code == 404, timeout=10)
    assert wait_until(lambda: store_rows(srv) == (1, 1), timeout=10), store_rows(srv)  # a sweep has passed
    assert states(poll(srv, pinned).json()) == {f"/{ident}": "COMPLETED"}
    resp = requests.post(f"{srv.url}{API}/release/{pinned}", json={"paths": [f"/{ident}"]}, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert wait_until(lambda: poll(srv, pinned).status_code == 404, timeout=10)
