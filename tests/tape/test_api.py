"""The Tape REST API's MUSTs over raw HTTP, on posix (every file is on disk): discovery, stage,
poll, cancel, delete, release, archiveinfo, malformed bodies, problem documents, limits, auth."""

import uuid

import pytest
import requests
from tape_client import (
    API,
    PROBLEM,
    TIMEOUT,
    archiveinfo,
    assert_problem,
    poll,
    stage,
    states,
    tape_settings,
    wait_done,
)

RW = "rw-token-for-the-tape-api-tests-01"
RO = "ro-token-for-the-tape-api-tests-02"
RW2 = "rw-token-for-the-tape-api-tests-03"


def put(srv, ident, data, headers=None):
    assert requests.put(srv.id_url(ident), data=data, headers=headers, timeout=TIMEOUT).status_code == 201


def new_id():
    return f"t-{uuid.uuid4().hex[:12]}"


def test_discovery_names_the_api_of_this_host(posix):
    resp = requests.get(posix.url + "/.well-known/wlcg-tape-rest-api", timeout=TIMEOUT)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    doc = resp.json()
    assert doc["sitename"] == "pyai" and isinstance(doc["description"], str)
    assert doc["endpoints"] == [{"uri": f"{posix.url}{API}", "version": "v1", "metadata": {}}]
    behind = requests.get(
        posix.url + "/.well-known/wlcg-tape-rest-api",
        headers={"X-Forwarded-Proto": "https", "Host": "archive.example.org"},
        timeout=TIMEOUT,
    )
    assert behind.json()["endpoints"][0]["uri"] == f"https://archive.example.org{API}"
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        resp = requests.request(method, posix.url + "/.well-known/wlcg-tape-rest-api", timeout=TIMEOUT)
        assert_problem(resp, 405)
        assert resp.headers["Allow"] == "GET, HEAD"


@pytest.mark.quick
def test_stage_answers_201_with_location_and_poll_lists_every_path_once(posix):
    on_disk, empty = new_id(), new_id()
    put(posix, on_disk, b"on disk")
    put(posix, empty, b"")
    paths = [f"/{on_disk}", f"//{empty}", f"/{new_id()}", "/not/an/id", "/.hidden", f"/{on_disk}"]
    resp = stage(posix, paths, diskLifetime="PT1H", targetedMetadata={"other-site": {"x": 1}, "pyai": {}})
    assert resp.status_code == 201, resp.text
    request_id = resp.json()["requestId"]
    assert set(resp.json()) == {"requestId"}
    assert uuid.UUID(request_id).version == 4
    assert resp.headers["Location"] == f"{posix.url}{API}/stage/{request_id}"

    first = poll(posix, request_id).json()
    expected = {f"/{on_disk}", f"/{empty}", paths[2], "/not/an/id", "/.hidden"}  # sanitised, each once
    assert sorted(entry["path"] for entry in first["files"]) == sorted(expected)
    for entry in first["files"]:
        assert ("state" in entry) != ("onDisk" in entry), entry
    doc = wait_done(posix, request_id)
    assert doc["id"] == request_id and isinstance(doc["createdAt"], int) and isinstance(doc["startedAt"], int)
    assert doc["completedAt"] >= doc["createdAt"]
    got = states(doc)
    assert got == {
        f"/{on_disk}": "COMPLETED",  # on disk already: not rejected, done at once
        f"/{empty}": "FAILED",
        paths[2]: "FAILED",
        "/not/an/id": "FAILED",
        "/.hidden": "FAILED",
    }
    for entry in doc["files"]:
        assert isinstance(entry["finishedAt"], int)
        assert ("error" in entry) is (entry["state"] == "FAILED"), entry


def test_cancel_refuses_a_path_outside_the_request_and_changes_nothing(posix):
    missing = f"/{new_id()}"  # FAILED at once; the refused cancel must not turn it CANCELLED either
    request_id = stage(posix, [missing]).json()["requestId"]
    before = wait_done(posix, request_id)
    resp = requests.post(
        f"{posix.url}{API}/stage/{request_id}/cancel", json={"paths": [missing, "/other"]}, timeout=TIMEOUT
    )
    body = assert_problem(resp, 400)
    assert "missing from stage request" in body["detail"]
    assert poll(posix, request_id).json() == before
    ok = requests.post(f"{posix.url}{API}/stage/{request_id}/cancel", json={"paths": [missing]}, timeout=TIMEOUT)
    assert ok.status_code == 200
    assert states(poll(posix, request_id).json()) == {missing: "FAILED"}  # terminal files stay as they are


def test_delete_then_404_and_unknown_ids(posix):
    ident = new_id()
    put(posix, ident, b"x")
    request_id = stage(posix, [f"/{ident}"]).json()["requestId"]
    assert requests.delete(f"{posix.url}{API}/stage/{request_id}", timeout=TIMEOUT).status_code == 200
    assert_problem(poll(posix, request_id), 404)
    assert_problem(requests.delete(f"{posix.url}{API}/stage/{request_id}", timeout=TIMEOUT), 404)
    unknown = str(uuid.uuid4())
    assert_problem(poll(posix, unknown), 404)
    assert_problem(
        requests.post(f"{posix.url}{API}/stage/{unknown}/cancel", json={"paths": ["/a"]}, timeout=TIMEOUT), 404
    )
    # release takes any id (gfal2 sends a placeholder when it has none; CTA ignores it)
    assert (
        requests.post(f"{posix.url}{API}/release/{unknown}", json={"paths": ["/a"]}, timeout=TIMEOUT).status_code == 200
    )
    assert_problem(requests.get(f"{posix.url}{API}/nothing-here", timeout=TIMEOUT), 404)
    assert_problem(requests.put(f"{posix.url}{API}/stage", data=b"{}", timeout=TIMEOUT), 405)


def test_release_answers_200(posix):
    ident = new_id()
    put(posix, ident, b"released")
    request_id = stage(posix, [f"/{ident}"]).json()["requestId"]
    wait_done(posix, request_id)
    resp = requests.post(f"{posix.url}{API}/release/{request_id}", json={"paths": [f"/{ident}"]}, timeout=TIMEOUT)
    assert resp.status_code == 200
    assert requests.get(posix.id_url(ident), timeout=TIMEOUT).content == b"released"  # posix evicts nothing


def test_archiveinfo_on_posix(posix):
    ident, empty, missing = new_id(), new_id(), new_id()
    put(posix, ident, b"data")
    put(posix, empty, b"")
    resp = archiveinfo(posix, [f"/{ident}", f"/{empty}", f"/{missing}", "/a/b", f"//{ident}"])
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    answer = resp.json()
    assert answer[0] == {"path": f"/{ident}", "locality": "DISK"}
    assert answer[1] == {"path": f"/{empty}", "locality": "NONE"}
    assert set(answer[2]) == {"path", "error"} and answer[2]["path"] == f"/{missing}"
    assert set(answer[3]) == {"path", "error"}
    assert len(answer) == 4  # //id is /id again: each path once


def test_archiveinfo_answers_for_the_first_paths_when_asked_too_many(posix):
    paths = [f"/{new_id()}" for _ in range(12)]  # the limit is 5
    resp = archiveinfo(posix, paths)
    assert resp.status_code == 200
    assert [entry["path"] for entry in resp.json()] == paths[:5]


MALFORMED = [
    (b"not json", "application/json"),
    (b"{}", "application/json"),
    (b'{"files": []}', "application/json"),
    (b'{"files": {"path": "/a"}}', "application/json"),
    (b'{"files": "/a"}', "application/json"),
    (b'{"files": [{"path": 12}]}', "application/json"),
    (b'{"files": [{"nopath": "/a"}]}', "application/json"),
    (b'{"files": ["/a"]}', "application/json"),
    (b'{"files": [{"path": "/a", "diskLifetime": "one hour"}]}', "application/json"),
    (b'{"files": [{"path": "/a", "diskLifetime": "PT"}]}', "application/json"),
    (b"[" * 100000, "application/json"),
    (b"", "application/json"),
]


@pytest.mark.parametrize("body,content_type", MALFORMED)
def test_malformed_stage_bodies_are_400_problems(posix, body, content_type):
    resp = requests.post(posix.url + API + "/stage", data=body, headers={"Content-Type": content_type}, timeout=TIMEOUT)
    assert_problem(resp, 400)


@pytest.mark.parametrize("body", [b"nope", b"{}", b'{"paths": []}', b'{"paths": "/a"}', b'{"paths": [1]}', b"[]"])
@pytest.mark.parametrize("where", ["/archiveinfo", "/stage/{id}/cancel", "/release/{id}"])
def test_malformed_paths_bodies_are_400_problems(posix, body, where):
    ident = new_id()
    put(posix, ident, b"x")
    request_id = stage(posix, [f"/{ident}"]).json()["requestId"]
    resp = requests.post(posix.url + API + where.format(id=request_id), data=body, timeout=TIMEOUT)
    assert_problem(resp, 400)


def test_too_many_files_is_400(posix):
    resp = stage(posix, [f"/{new_id()}" for _ in range(21)])  # the limit is 20
    assert "too many files" in assert_problem(resp, 400)["detail"]


def test_paths_of_the_api_are_no_ids(posix):
    """Nothing under /api/v1/ or /.well-known/ reaches the data plane (PUT there stores nothing)."""
    for target in ("/api/v1/x", "/api/v1/stage", "/.well-known/wlcg-tape-rest-api"):
        assert_problem(requests.put(posix.url + target, data=b"x", timeout=TIMEOUT), 405)
    assert not any(p.name == "x" for p in posix.all_files())


@pytest.fixture(scope="module")
def authed(posix_pool, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tape-auth") / "tokens"
    tokens.touch(mode=0o600)
    tokens.write_text(f"rw {RW}\nro {RO}\nrw {RW2}\n")
    return posix_pool.start("auth", **tape_settings(PAI_AUTH_TOKENS_FILE=str(tokens), PAI_TAPE_MAX_OPEN_REQUESTS="1"))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_auth_reads_need_ro_writes_need_rw_discovery_is_open(authed):
    assert requests.get(authed.url + "/.well-known/wlcg-tape-rest-api", timeout=TIMEOUT).status_code == 200
    ident = new_id()
    put(authed, ident, b"x", bearer(RW))
    resp = stage(authed, [f"/{ident}"])
    assert_problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(stage(authed, [f"/{ident}"], headers=bearer("not-a-token-of-this-archive")), 401)
    assert_problem(stage(authed, [f"/{ident}"], headers=bearer(RO)), 403)
    resp = stage(authed, [f"/{ident}"], headers=bearer(RW))
    assert resp.status_code == 201
    request_id = resp.json()["requestId"]
    assert poll(authed, request_id, bearer(RW)).status_code == 200
    assert_problem(poll(authed, request_id), 401)
    assert archiveinfo(authed, [f"/{ident}"], bearer(RO)).json() == [{"path": f"/{ident}", "locality": "DISK"}]
    for where in (f"/stage/{request_id}/cancel", f"/release/{request_id}"):
        assert_problem(requests.post(authed.url + API + where, json={"paths": [f"/{ident}"]}, headers=bearer(RO)), 403)
    assert_problem(requests.delete(f"{authed.url}{API}/stage/{request_id}", headers=bearer(RO), timeout=TIMEOUT), 403)
    # another owner does not see it
    assert_problem(poll(authed, request_id, bearer(RW2)), 404)
    assert_problem(requests.delete(f"{authed.url}{API}/stage/{request_id}", headers=bearer(RW2), timeout=TIMEOUT), 404)
    wait_done(authed, request_id, headers=bearer(RW))
    assert (
        requests.delete(f"{authed.url}{API}/stage/{request_id}", headers=bearer(RW), timeout=TIMEOUT).status_code == 200
    )


def test_problem_documents_carry_their_media_type(posix):
    resp = requests.post(posix.url + API + "/stage", data=b"{", timeout=TIMEOUT)
    assert resp.headers["Content-Type"] == PROBLEM
    # the Pacifica routes keep their document
    pacifica = requests.get(posix.id_url("a/b"), timeout=TIMEOUT)
    assert pacifica.headers["Content-Type"] == "application/json" and "traceback" in pacifica.json()
