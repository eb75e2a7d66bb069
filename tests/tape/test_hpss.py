"""The Tape REST API on the HPSS emulator: files really on tape, slow stages, cancel, release,
admission limits, and a server killed in the middle of a stage request."""

import os
import secrets

import requests
from emulator import stages
from server import wait_until
from tape_client import (
    API,
    TIMEOUT,
    archiveinfo,
    assert_problem,
    emu,
    kill,
    poll,
    stage,
    states,
    tape_settings,
    wait_done,
)


def new_id():
    return str(secrets.randbits(40) | (1 << 41))


def on_tape(srv, count, size=3000):
    """``count`` new files, purged to tape; their paths."""
    idents = [new_id() for _ in range(count)]
    for ident in idents:
        assert requests.put(srv.id_url(ident), data=os.urandom(size), timeout=TIMEOUT).status_code == 201
    emu(srv, "purge", *idents)
    return [f"/{ident}" for ident in idents]


def locality(srv, path):
    return archiveinfo(srv, [path]).json()[0].get("locality")


def test_localities_stage_and_release_on_hpss(fresh_hpss):
    srv = fresh_hpss.start("tape", **tape_settings(PAI_HPSS_PING_INTERVAL="0"))
    emu(srv, "set-stage-delay", "1.0")
    (path,) = on_tape(srv, 1)
    fresh = new_id()
    assert requests.put(srv.id_url(fresh), data=b"new", timeout=TIMEOUT).status_code == 201
    empty = new_id()
    assert requests.put(srv.id_url(empty), data=b"", timeout=TIMEOUT).status_code == 201
    answer = archiveinfo(srv, [path, f"/{fresh}", f"/{empty}", f"/{new_id()}", "/not-an-integer"]).json()
    assert [entry.get("locality") for entry in answer] == ["TAPE", "DISK", "NONE", None, None]
    assert "error" in answer[3] and "error" in answer[4]
    assert stages(srv, path[1:]) == 0, "archiveinfo started a stage"
    assert locality(srv, path) == "TAPE"

    resp = stage(srv, [path])
    assert resp.status_code == 201
    request_id = resp.json()["requestId"]
    assert states(poll(srv, request_id).json())[path] in ("SUBMITTED", "STARTED")
    doc = wait_done(srv, request_id)
    assert states(doc) == {path: "COMPLETED"}
    assert locality(srv, path) == "DISK_AND_TAPE"

    assert (
        requests.post(f"{srv.url}{API}/release/{request_id}", json={"paths": [path]}, timeout=TIMEOUT).status_code
        == 200
    )
    assert locality(srv, path) == "TAPE"  # no other pin held it: purged from disk
    # a file only on disk (never migrated) is never purged by a release
    request_id = stage(srv, [f"/{fresh}"]).json()["requestId"]
    wait_done(srv, request_id)
    requests.post(f"{srv.url}{API}/release/{request_id}", json={"paths": [f"/{fresh}"]}, timeout=TIMEOUT)
    assert locality(srv, f"/{fresh}") == "DISK"


def test_release_keeps_a_file_another_request_pins(fresh_hpss):
    srv = fresh_hpss.start("pins", **tape_settings(PAI_HPSS_PING_INTERVAL="0"))
    emu(srv, "set-stage-delay", "0.2")
    (path,) = on_tape(srv, 1)
    first = stage(srv, [path]).json()["requestId"]
    second = stage(srv, [path], diskLifetime="P1D").json()["requestId"]
    wait_done(srv, first)
    wait_done(srv, second)
    requests.post(f"{srv.url}{API}/release/{first}", json={"paths": [path]}, timeout=TIMEOUT)
    assert locality(srv, path) == "DISK_AND_TAPE"  # the second request still pins it
    requests.post(f"{srv.url}{API}/release/{second}", json={"paths": [path]}, timeout=TIMEOUT)
    assert locality(srv, path) == "TAPE"


def test_release_under_an_id_of_no_request(fresh_hpss):
    """gfal-evict without a request id releases under a placeholder (CTA ignores the id): the
    owner's pins on the paths go in every request, and what no pin holds is evicted."""
    srv = fresh_hpss.start("placeholder", **tape_settings(PAI_HPSS_PING_INTERVAL="0"))
    emu(srv, "set-stage-delay", "0.2")
    staged, pacifica = on_tape(srv, 2)
    wait_done(srv, stage(srv, [staged]).json()["requestId"])
    assert requests.post(srv.id_url(pacifica[1:]), timeout=TIMEOUT).status_code in (200, 202)  # a Pacifica stage
    assert wait_until(lambda: locality(srv, pacifica) == "DISK_AND_TAPE", timeout=30)
    assert locality(srv, staged) == "DISK_AND_TAPE"
    body = {"paths": [staged, pacifica]}
    resp = requests.post(f"{srv.url}{API}/release/gfal2-placeholder-id", json=body, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert locality(srv, staged) == "TAPE" and locality(srv, pacifica) == "TAPE"


def test_cancel_during_a_stage_and_the_open_requests_limit(fresh_hpss):
    srv = fresh_hpss.start("cancel", **tape_settings(PAI_HPSS_PING_INTERVAL="0", PAI_TAPE_MAX_OPEN_REQUESTS="1"))
    emu(srv, "set-stage-delay", "30")
    slow, other = on_tape(srv, 2)
    request_id = stage(srv, [slow, other]).json()["requestId"]
    assert wait_until(lambda: set(states(poll(srv, request_id).json()).values()) == {"STARTED"}, timeout=10)
    refused = stage(srv, [other])
    assert_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    resp = requests.post(f"{srv.url}{API}/stage/{request_id}/cancel", json={"paths": [slow]}, timeout=TIMEOUT)
    assert resp.status_code == 200
    got = states(poll(srv, request_id).json())
    assert got == {slow: "CANCELLED", other: "STARTED"}
    assert "completedAt" not in poll(srv, request_id).json()
    requests.post(f"{srv.url}{API}/stage/{request_id}/cancel", json={"paths": [other]}, timeout=TIMEOUT)
    doc = poll(srv, request_id).json()
    assert states(doc) == {slow: "CANCELLED", other: "CANCELLED"} and "completedAt" in doc
    assert stage(srv, [other]).status_code == 201  # no open request left: admitted again


def test_a_stage_request_survives_a_server_killed_mid_stage(fresh_hpss):
    srv = fresh_hpss.start("restart", **tape_settings(PAI_HPSS_PING_INTERVAL="0"))
    emu(srv, "set-stage-delay", "3")
    paths = on_tape(srv, 2)
    request_id = stage(srv, paths).json()["requestId"]
    assert wait_until(lambda: set(states(poll(srv, request_id).json()).values()) == {"STARTED"}, timeout=10)
    kill(srv)  # its leases stay in the store until they expire
    srv.start()
    doc = wait_done(srv, request_id, timeout=40)
    assert states(doc) == dict.fromkeys(paths, "COMPLETED"), doc
    assert all(locality(srv, path) == "DISK_AND_TAPE" for path in paths)


def test_one_clients_queue_does_not_hold_back_anothers_stage(fresh_hpss, tmp_path):
    """Two executor slots, one client's eight files on tape queued first: the other client's
    one file gets the next free slot, and is on disk while the first client's queue still waits."""
    tokens = tmp_path / "tokens"
    tokens.touch(mode=0o600)
    first, second = "rw-token-of-the-first-tape-client-1", "rw-token-of-the-second-tape-client-2"
    tokens.write_text(f"rw {first}\nrw {second}\n")
    srv = fresh_hpss.start(
        "fair",
        **tape_settings(
            PAI_HPSS_PING_INTERVAL="0", PAI_AUTH_TOKENS_FILE=str(tokens), PAI_WORKERS="1", PAI_TAPE_WORKERS="2"
        ),
    )
    emu(srv, "set-stage-delay", "1.0")
    idents = [new_id() for _ in range(9)]
    for ident in idents:
        resp = requests.put(srv.id_url(ident), data=os.urandom(3000), headers=bearer(first), timeout=TIMEOUT)
        assert resp.status_code == 201
    emu(srv, "purge", *idents)
    queued = stage(srv, [f"/{ident}" for ident in idents[:8]], headers=bearer(first)).json()["requestId"]
    other = stage(srv, [f"/{idents[8]}"], headers=bearer(second)).json()["requestId"]
    assert states(wait_done(srv, other, headers=bearer(second))) == {f"/{idents[8]}": "COMPLETED"}
    waiting = [state for state in states(poll(srv, queued, bearer(first)).json()).values() if state == "SUBMITTED"]
    assert len(waiting) >= 3, waiting  # FIFO would have claimed all eight before it


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_the_log_names_where_the_requests_are_kept(fresh_hpss):
    """On hpss the default store is on this host (HPSS is no file system for SQLite): the log says where."""
    srv = fresh_hpss.start("where", **tape_settings(PAI_HPSS_PING_INTERVAL="0"))
    lines = [line for line in srv.log().splitlines() if "stage requests are kept in" in line]
    assert lines and all("/.pacifica-archiveinterface/tape-state-" in line for line in lines), srv.log()[-2000:]
    assert not any(str(srv.prefix) in line for line in lines)
