"""WLCG profile JWTs through the real server: a test issuer over https (tests/fixtures/issuer.py)
mints the tokens; the server fetches its keys, verifies each token and decides by its storage
scopes, relative to the issuer's base path, beside the static tokens, which keep working."""

import json
import secrets
from pathlib import Path

import jsonschema_rs  # schemathesis's validator, installed with the test extras
import pytest
import requests
from fixtures.issuer import AUDIENCE
from server import wait_until

from pyai.ops import transfer_log

STATIC = "static-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def vo_issuer(issuer_pki):
    """A second issuer, configured with the base path /vo: its scopes are read below /vo."""
    from fixtures.issuer import Issuer

    issuer = Issuer(issuer_pki, "/vo-issuer")
    yield issuer
    issuer.stop()


@pytest.fixture(scope="module")
def srv(server_pool, request, module_issuer, vo_issuer, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("static") / "tokens"
    tokens.write_text(f"rw {STATIC} operator\n")
    tokens.chmod(0o600)
    return server_pool(request).start(
        "wlcg",
        PAI_NAMESPACE="paths",
        PAI_AUTH_TOKENS_FILE=str(tokens),
        PAI_AUTH_JWT_ISSUERS=f"{module_issuer.url} /, {vo_issuer.url} /vo",
        PAI_AUTH_JWT_AUDIENCES=f"{AUDIENCE}, other.example",
        PAI_AUTH_JWT_CA_FILE=module_issuer.ca_file,
    )


def call(method, url, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


def static(method, url, **kwargs):
    return call(method, url, STATIC, **kwargs)


@pytest.fixture
def area(srv):
    """A fresh top-level collection, made with the static token: its name."""
    name = "d" + secrets.token_hex(5)
    assert static("MKCOL", f"{srv.url}/{name}").status_code == 201
    return name


def test_storage_create_can_mkcol_and_put_under_its_path_and_nothing_else(srv, module_issuer, area):
    """The issue's rule: storage.create:/data may MKCOL and PUT under /data, and nothing else."""
    token = module_issuer.token(scope=f"storage.create:/{area}/data")
    base = f"{srv.url}/{area}"
    assert call("MKCOL", base + "/data", token).status_code == 201
    assert call("MKCOL", base + "/data/sub", token).status_code == 201
    assert call("PUT", base + "/data/sub/f", token, data=b"created").status_code == 201
    assert (srv.prefix / area / "data" / "sub" / "f").read_bytes() == b"created"
    assert call("HEAD", base + "/data/sub/f", token).status_code == 204  # any storage scope may stat
    assert call("PROPFIND", base + "/data/", token, headers={"Depth": "1"}).status_code == 207
    for method, path in [
        ("GET", "/data/sub/f"),  # no storage.read
        ("DELETE", "/data/sub/f"),  # no storage.modify
        ("MKCOL", "/datax"),  # /data does not cover /datax
        ("PUT", "/datax"),
        ("PUT", "/other"),
        ("MKCOL", "/other"),
    ]:
        resp = call(method, base + path, token, data=b"x" if method == "PUT" else None)
        assert resp.status_code == 403, (method, path, resp.text)
        assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    moved = call("MOVE", base + "/data/sub/f", token, headers={"Destination": f"/{area}/data/sub/g"})
    assert moved.status_code == 403
    assert not (srv.prefix / area / "datax").exists() and not (srv.prefix / area / "other").exists()


def test_read_modify_and_stage_scopes(srv, module_issuer, area):
    base = f"{srv.url}/{area}"
    assert static("PUT", base + "/f", data=b"stored").status_code == 201
    reader = module_issuer.token(scope=f"storage.read:/{area}")
    assert call("GET", base + "/f", reader).content == b"stored"
    assert call("PUT", base + "/g", reader, data=b"x").status_code == 403
    assert call("POST", base + "/f", reader).status_code == 403  # a stage needs storage.stage
    stager = module_issuer.token(scope=f"storage.stage:/{area}")
    assert call("POST", base + "/f", stager).status_code == 200
    assert call("GET", base + "/f", stager).status_code == 403  # storage.stage does not imply read
    modifier = module_issuer.token(scope=f"storage.modify:/{area}/in")
    assert static("MKCOL", base + "/in").status_code == 201
    assert static("PUT", base + "/in/f", data=b"m").status_code == 201
    moved = call("MOVE", base + "/in/f", modifier, headers={"Destination": f"/{area}/in/g"})
    assert moved.status_code == 201
    escaping = call("MOVE", base + "/in/g", modifier, headers={"Destination": f"/{area}/g"})
    assert escaping.status_code == 403  # the destination is outside the scope
    assert call("DELETE", base + "/in/g", modifier).status_code == 200
    assert call("DELETE", base + "/", modifier).status_code == 403  # above the scope's path
    assert call("DELETE", base + "/in/", modifier).status_code == 204  # a scope covers its own path
    assert not (srv.prefix / area / "in").exists()


def test_the_transfer_log_names_the_token_by_issuer_and_subject(srv, module_issuer, area):
    validator = jsonschema_rs.Draft202012Validator(json.loads(Path(transfer_log.SCHEMA_PATH).read_text()))
    assert static("PUT", f"{srv.url}/{area}/logged", data=b"x").status_code == 201
    token = module_issuer.token(scope=f"storage.read:/{area}", sub="jdoe@example.org")
    assert call("GET", f"{srv.url}/{area}/logged", token).status_code == 200

    def logged():
        lines = [json.loads(raw) for raw in srv.log().splitlines() if raw.startswith("{")]
        return [line for line in lines if line["path"] == f"/{area}/logged" and line["method"] == "GET"]

    wait_until(logged, timeout=10)
    line = logged()[0]
    validator.validate(line)
    assert line["token"] == "jwt:127.0.0.1:jdoe@example.org"
    assert token not in srv.log()


def test_a_scope_is_read_below_its_issuer_s_base_path(srv, vo_issuer):
    """storage.read:/x from the issuer configured with base /vo covers /vo/x only."""
    assert static("MKCOL", srv.url + "/vo").status_code in (201, 405)
    name = "x" + secrets.token_hex(4)
    assert static("MKCOL", f"{srv.url}/vo/{name}").status_code == 201
    assert static("PUT", f"{srv.url}/vo/{name}/f", data=b"vo").status_code == 201
    assert static("MKCOL", f"{srv.url}/{name}").status_code == 201
    assert static("PUT", f"{srv.url}/{name}/f", data=b"top").status_code == 201
    token = vo_issuer.token(scope=f"storage.read:/{name}")
    assert call("GET", f"{srv.url}/vo/{name}/f", token).content == b"vo"
    assert call("GET", f"{srv.url}/{name}/f", token).status_code == 403


def test_the_tape_api_checks_every_path_of_the_body(srv, module_issuer, area):
    assert static("PUT", f"{srv.url}/{area}/f", data=b"t").status_code == 201
    stager = module_issuer.token(scope=f"storage.stage:/{area}")
    api = srv.url + "/api/v1"
    staged = call("POST", api + "/stage", stager, json={"files": [{"path": f"/{area}/f"}]})
    assert staged.status_code == 201
    request_id = staged.json()["requestId"]
    assert call("GET", f"{api}/stage/{request_id}", stager).status_code == 200
    outside = call("POST", api + "/stage", stager, json={"files": [{"path": f"/{area}/f"}, {"path": "/elsewhere/f"}]})
    assert outside.status_code == 403
    info = call("POST", api + "/archiveinfo", module_issuer.token(scope=f"storage.read:/{area}"),
                json={"paths": [f"/{area}/f"]})  # fmt: skip
    assert info.status_code == 200 and info.json()[0]["locality"] == "DISK"
    creator = module_issuer.token(scope=f"storage.create:/{area}")
    assert call("POST", api + "/stage", creator, json={"files": [{"path": f"/{area}/f"}]}).status_code == 403


@pytest.mark.parametrize(
    "bad",
    ["expired", "wrong-audience", "hs256", "alg-none", "unknown-kid", "wlcg-ver-2", "relative-scope", "unknown-issuer"],
)
def test_bad_tokens_are_401_invalid_token(srv, module_issuer, make_issuer, area, bad):
    scope = f"storage.read:/{area}"
    token = {
        "expired": lambda: module_issuer.token(scope=scope, exp_in=-300),
        "wrong-audience": lambda: module_issuer.token(scope=scope, aud="https://someone.else"),
        "hs256": lambda: module_issuer.token(scope=scope, alg="HS256", kid=module_issuer.rsa_kid),
        "alg-none": lambda: module_issuer.token(scope=scope, alg="none", kid=module_issuer.rsa_kid),
        "unknown-kid": lambda: module_issuer.unpublished_token(scope=scope),
        "wlcg-ver-2": lambda: module_issuer.token(scope=scope, claims={"wlcg.ver": "2.0"}),
        "relative-scope": lambda: module_issuer.token(scope=f"storage.read:{area}"),
        "unknown-issuer": lambda: make_issuer().token(scope=scope),
    }[bad]()
    resp = call("PROPFIND", f"{srv.url}/{area}/", token, headers={"Depth": "0"})
    assert resp.status_code == 401, resp.text
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="pyai", error="invalid_token"'
    assert resp.headers["Content-Type"] == "application/json"


def test_static_tokens_keep_working_and_metrics_take_no_jwt(srv, module_issuer, area):
    assert static("PUT", f"{srv.url}/{area}/s", data=b"static").status_code == 201
    assert static("GET", f"{srv.url}/{area}/s").content == b"static"
    assert call("GET", f"{srv.url}/{area}/s", "not-a-token-at-all-1234").status_code == 401
    token = module_issuer.token(scope="storage.read:/")
    assert call("GET", srv.url + "/metrics", token).status_code == 403


def test_the_issuer_going_down_keeps_fetched_keys_verifying(srv, module_issuer, area):
    token = module_issuer.token(scope=f"storage.read:/{area}")
    assert call("PROPFIND", f"{srv.url}/{area}/", token, headers={"Depth": "0"}).status_code == 207
    module_issuer.stop()
    try:
        fresh = module_issuer.token(scope=f"storage.read:/{area}")
        assert call("PROPFIND", f"{srv.url}/{area}/", fresh, headers={"Depth": "0"}).status_code == 207
    finally:
        module_issuer.start()


def test_an_issuer_never_reached_is_503_with_retry_after(server_pool, request, make_issuer):
    down = make_issuer()
    down.stop()
    srv = server_pool(request).start(
        "wlcg-down",
        PAI_NAMESPACE="paths",
        PAI_AUTH_JWT_ISSUERS=f"{down.url} /",
        PAI_AUTH_JWT_AUDIENCES=AUDIENCE,
        PAI_AUTH_JWT_CA_FILE=down.ca_file,
    )
    resp = call("PROPFIND", srv.url + "/", down.token(scope="storage.read:/"), headers={"Depth": "0"})
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["Content-Type"] == "application/json"
