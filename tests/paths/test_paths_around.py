"""``namespace = paths`` with the rest of the service: static tokens (MKCOL and MOVE need a
read-write token), the Tape API (its paths are namespace paths), and the start-up checks."""

import secrets

import pytest
import requests

RO, RW = "ro-" + secrets.token_hex(12), "rw-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def authed(server_pool, request, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text(f"ro {RO}\nrw {RW}\n")
    tokens.chmod(0o600)
    return server_pool(request).start("paths-auth", PAI_NAMESPACE="paths", PAI_AUTH_TOKENS_FILE=str(tokens))


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_collection_verbs_need_a_read_write_token(authed):
    url = authed.url + "/c" + secrets.token_hex(4)
    assert requests.request("MKCOL", url, timeout=10).status_code == 401
    refused = requests.request("MKCOL", url, headers=bearer(RO), timeout=10)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert requests.request("MKCOL", url, headers=bearer(RW), timeout=10).status_code == 201
    assert requests.put(url + "/f", data=b"x", headers=bearer(RW), timeout=10).status_code == 201
    move = {"Destination": url + "/g", **bearer(RO)}
    assert requests.request("MOVE", url + "/f", headers=move, timeout=10).status_code == 403
    listed = requests.request("PROPFIND", url + "/", headers={"Depth": "1", **bearer(RO)}, timeout=10)
    assert listed.status_code == 207  # a listing is a read
    move = {"Destination": url + "/g", **bearer(RW)}
    assert requests.request("MOVE", url + "/f", headers=move, timeout=10).status_code == 201


def test_the_tape_api_takes_namespace_paths(paths_server, top):
    path = top + "/f.root"
    assert requests.put(paths_server.url + path, data=b"on disk", timeout=10).status_code == 201
    info = requests.post(
        paths_server.url + "/api/v1/archiveinfo/", json={"paths": [path, top + "/none"]}, timeout=10
    ).json()
    assert info[0] == {"path": path, "locality": "DISK"}
    assert info[1]["path"] == top + "/none" and "error" in info[1]
    staged = requests.post(paths_server.url + "/api/v1/stage", json={"files": [{"path": path}]}, timeout=10)
    assert staged.status_code == 201
    request_id = staged.json()["requestId"]
    state = requests.get(f"{paths_server.url}/api/v1/stage/{request_id}", timeout=10).json()
    assert [(entry["path"], entry["state"]) for entry in state["files"]] == [(path, "COMPLETED")]


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"PAI_USE_ID2FILENAME": "true"}, "cannot be combined with use_id2filename"),
        ({"PAI_NAMESPACE": "tree"}, "bad value 'tree' for PAI_NAMESPACE: expected one of ids, paths"),
    ],
    ids=["id2filename", "typo"],
)
def test_paths_that_cannot_work_stop_the_start_with_one_line(server_pool, request, settings, line):
    pool = server_pool(request)
    with pytest.raises(RuntimeError):
        pool.start("refused", **{"PAI_NAMESPACE": "paths", **settings})
    assert line in pool.servers[-1].log()
