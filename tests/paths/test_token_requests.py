"""Tokens the archive issues for X.509 jobs, through the real server: gfal2's and FTS's token
requests (POST application/macaroon-request), answered with a token of at most the asker's rights,
which then works as a bearer token on its path and for its activities until it expires.

The server has static tokens (rw, ro, metrics), a WLCG issuer (tests/fixtures/issuer.py) and a
token secret; the test knows the secret, so it mints the tokens a client could not (expired ones)
with the module's own signing function, and never sleeps to see one expire."""

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import jsonschema_rs  # schemathesis's validator, installed with the test extras
import pytest
import requests
from fixtures.issuer import AUDIENCE
from server import ROOT, free_port, gunicorn_command, service_env, wait_until

from pyai.ops import transfer_log
from pyai.web import issued_tokens
from pyai.web.issued_tokens import MAX_VALIDITY, IssuedGrant, mint

RW = "rw-" + secrets.token_hex(12)
RO = "ro-" + secrets.token_hex(12)
METRICS = "metrics-" + secrets.token_hex(12)
SECRET = secrets.token_bytes(48)
TOKEN_REQUEST = {"Content-Type": "application/macaroon-request"}
SOURCE = {"caveats": ["activity:DOWNLOAD,LIST"], "validity": "PT60M"}  # what gfal2 asks for a source
DESTINATION = {"caveats": ["activity:MANAGE,UPLOAD,DELETE,LIST"], "validity": "PT190M"}  # and for a destination
INVALID = 'Bearer realm="pyai", error="invalid_token"'
INSUFFICIENT = 'Bearer realm="pyai", error="insufficient_scope"'


def private_file(path, content):
    path.write_bytes(content)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def srv(server_pool, request, module_issuer, tmp_path_factory):
    base = tmp_path_factory.mktemp("issuing")
    tokens = private_file(base / "tokens", f"rw {RW} operator\nro {RO} reader\nmetrics {METRICS} prom\n".encode())
    return server_pool(request).start(
        "issuing",
        PAI_NAMESPACE="paths",
        PAI_AUTH_TOKENS_FILE=str(tokens),
        PAI_AUTH_JWT_ISSUERS=f"{module_issuer.url} /",
        PAI_AUTH_JWT_AUDIENCES=AUDIENCE,
        PAI_AUTH_JWT_CA_FILE=module_issuer.ca_file,
        PAI_AUTH_TOKEN_SECRET_FILE=str(private_file(base / "secret", SECRET + b"\n")),
    )


def call(method, url, token=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


def ask(url, token, document=SOURCE, **kwargs):
    """A token request as gfal2 sends it: the JSON document as the body of a POST to the path."""
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    return call("POST", url, token, headers=dict(TOKEN_REQUEST), data=data, **kwargs)


def issued(url, token, document=SOURCE):
    """The token a request answers 200 with."""
    resp = ask(url, token, document)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json" and resp.headers["Cache-Control"] == "no-store"
    answer = resp.json()
    assert set(answer) == {"macaroon", "expires_in"} and answer["macaroon"].startswith("pyai1.")
    return answer["macaroon"]


@pytest.fixture
def area(srv):
    """A fresh top-level collection holding a file ``f`` and a collection ``sub`` with a file ``g``."""
    name = "i" + secrets.token_hex(5)
    base = f"{srv.url}/{name}"
    assert call("MKCOL", base, RW).status_code == 201
    assert call("MKCOL", base + "/sub", RW).status_code == 201
    assert call("PUT", base + "/f", RW, data=b"file f").status_code == 201
    assert call("PUT", base + "/sub/g", RW, data=b"file g").status_code == 201
    return name


def test_a_source_token_reads_its_path_and_nothing_else(srv, area):
    base = f"{srv.url}/{area}"
    token = issued(base + "/sub", RW)
    assert call("GET", base + "/sub/g", token).content == b"file g"
    assert call("HEAD", base + "/sub/g", token).status_code == 204
    assert call("PROPFIND", base + "/sub/", token, headers={"Depth": "1"}).status_code == 207
    for method, path in [
        ("GET", "/f"),  # beside its path
        ("GET", "/subx"),  # /sub does not cover /subx
        ("PROPFIND", "/"),  # above its path
        ("PUT", "/sub/new"),  # no UPLOAD
        ("DELETE", "/sub/g"),  # no DELETE
        ("POST", "/sub/g"),  # no STAGE
        ("MKCOL", "/sub/c"),
    ]:
        resp = call(method, base + path, token, data=b"x" if method == "PUT" else None)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.headers["WWW-Authenticate"] == INSUFFICIENT
    assert call("GET", srv.url + "/metrics", token).status_code == 403
    assert not (srv.prefix / area / "sub" / "new").exists() and (srv.prefix / area / "sub" / "g").exists()


def test_a_destination_token_writes_its_file(srv, area):
    base = f"{srv.url}/{area}"
    token = issued(base + "/out.root", RW, DESTINATION)
    assert call("PROPFIND", base + "/out.root", token, headers={"Depth": "0"}).status_code == 404  # stat: not there yet
    assert call("PUT", base + "/out.root", token, data=b"copied").status_code == 201
    assert (srv.prefix / area / "out.root").read_bytes() == b"copied"
    assert call("GET", base + "/out.root", token).status_code == 403  # no DOWNLOAD asked
    assert call("PUT", base + "/out.rootx", token, data=b"x").status_code == 403
    assert call("PUT", base + "/sub/other", token, data=b"x").status_code == 403
    assert call("DELETE", base + "/out.root", token).status_code == 200
    assert not (srv.prefix / area / "out.root").exists()


def test_the_transfer_log_names_an_issued_token_by_its_asker(srv, area):
    validator = jsonschema_rs.Draft202012Validator(json.loads(Path(transfer_log.SCHEMA_PATH).read_text()))
    token = issued(f"{srv.url}/{area}/f", RW)
    assert call("GET", f"{srv.url}/{area}/f", token).status_code == 200

    def logged(method):
        lines = [json.loads(raw) for raw in srv.log().splitlines() if raw.startswith("{")]
        return [line for line in lines if line["path"] == f"/{area}/f" and line["method"] == method]

    wait_until(lambda: logged("GET") and logged("POST"), timeout=10)
    for line in (logged("GET")[0], logged("POST")[0]):
        validator.validate(line)
    assert logged("GET")[0]["token"] == "issued:operator"
    assert logged("POST")[0]["token"] == "operator" and logged("POST")[0]["status"] == 200
    assert token not in srv.log() and token.split(".")[2] not in srv.log()


def test_expired_forged_and_foreign_tokens_are_401(srv, area):
    url = f"{srv.url}/{area}/f"
    good = issued(url, RW)
    version, payload, signature = good.split(".")
    now = int(time.time())
    forged_payload = mint(SECRET, IssuedGrant("operator", "/", frozenset({"storage.modify"}), now + 3600)).split(".")[1]
    bad = {
        "expired": mint(SECRET, IssuedGrant("operator", f"/{area}", frozenset({"storage.read"}), now - 1)),
        "forged signature": f"{version}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}",
        "another payload": f"{version}.{forged_payload}.{signature}",
        "another secret": mint(
            secrets.token_bytes(32), IssuedGrant("operator", f"/{area}", frozenset({"storage.read"}), now + 60)
        ),
        "malformed": "pyai1.e30",
        "no signature": f"{version}.{payload}",
    }
    for case, token in bad.items():
        resp = call("GET", url, token)
        assert resp.status_code == 401, (case, resp.text)
        assert resp.headers["WWW-Authenticate"] == INVALID, case
        assert resp.headers["Content-Type"] == "application/json"
        assert token not in resp.text and signature not in resp.text
    assert call("GET", url, good).content == b"file f"  # the good one, still


def test_a_token_is_good_until_its_expiry(srv, area):
    """A token minted to expire soon still works; one at its expiry does not (no sleep: the
    server's clock is the test's, so a token that expired a second ago is past for both)."""
    now = int(time.time())
    soon = mint(SECRET, IssuedGrant("operator", f"/{area}", frozenset({"storage.read"}), now + 30))
    assert call("GET", f"{srv.url}/{area}/f", soon).content == b"file f"
    gone = mint(SECRET, IssuedGrant("operator", f"/{area}", frozenset({"storage.read"}), now))
    assert call("GET", f"{srv.url}/{area}/f", gone).status_code == 401


def test_the_validity_is_honoured_up_to_the_maximum(srv, area):
    url = f"{srv.url}/{area}/f"
    for validity, seconds in (("PT60M", 3600), ("PT190M", 11400), ("PT3600S", 3600), ("P1D", MAX_VALIDITY)):
        before = time.time()
        resp = ask(url, RW, {"caveats": ["activity:DOWNLOAD"], "validity": validity})
        assert resp.status_code == 200 and resp.json()["expires_in"] == seconds, (validity, resp.text)
        grant = issued_tokens.verify(SECRET, resp.json()["macaroon"], before)  # what the token itself says
        assert int(before) + seconds <= grant.expires <= int(time.time()) + seconds


def test_a_path_caveat_narrows_and_a_before_caveat_shortens(srv, area):
    base = f"{srv.url}/{area}"
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
    document = {"caveats": ["activity:DOWNLOAD,LIST", f"path:/{area}/sub", f"before:{soon}"], "validity": "PT1H"}
    resp = ask(base, RW, document)
    assert resp.status_code == 200, resp.text
    assert 100 <= resp.json()["expires_in"] <= 121
    token = resp.json()["macaroon"]
    assert call("GET", base + "/sub/g", token).status_code == 200
    assert call("GET", base + "/f", token).status_code == 403
    outside = ask(base + "/sub", RW, {**document, "caveats": ["activity:DOWNLOAD", f"path:/{area}/f"]})
    assert outside.status_code == 400 and "path: caveat" in outside.json()["message"]


# --- who may ask -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who, activities, status",
    [
        ("rw", "MANAGE,UPLOAD,DELETE,LIST", 200),
        ("rw", "DOWNLOAD,UPLOAD,DELETE,MANAGE,LIST,READ_METADATA,UPDATE_METADATA,STAGE", 200),
        ("ro", "DOWNLOAD,LIST", 200),
        ("ro", "READ_METADATA,STAGE", 200),
        ("ro", "UPLOAD", 403),
        ("ro", "DOWNLOAD,LIST,DELETE", 403),
        ("ro", "MANAGE", 403),
        ("metrics", "LIST", 403),
        ("none", "DOWNLOAD", 401),
        ("unknown", "DOWNLOAD", 401),
    ],
)
def test_a_static_token_asks_for_at_most_its_scope(srv, area, who, activities, status):
    token = {"rw": RW, "ro": RO, "metrics": METRICS, "none": None, "unknown": "not-a-token-of-this-archive"}[who]
    resp = ask(f"{srv.url}/{area}/f", token, {"caveats": [f"activity:{activities}"], "validity": "PT1H"})
    assert resp.status_code == status, resp.text
    if status != 200:
        assert "macaroon" not in resp.json() and resp.headers["Content-Type"] == "application/json"
        assert all(secret not in resp.text for secret in (RW, RO, METRICS))
    if status == 403:
        assert resp.headers["WWW-Authenticate"] == INSUFFICIENT


def test_a_wlcg_token_asks_for_at_most_its_scopes_on_the_path(srv, module_issuer, area):
    base = f"{srv.url}/{area}"
    reader = module_issuer.token(scope=f"storage.read:/{area}", sub="jdoe")
    token = issued(base + "/sub", reader)  # DOWNLOAD,LIST
    assert call("GET", base + "/sub/g", token).content == b"file g"
    assert ask(base + "/sub", reader, DESTINATION).status_code == 403  # UPLOAD, DELETE, MANAGE: not its own
    assert ask(base + "/sub", reader, {"caveats": ["activity:STAGE"], "validity": "PT1H"}).status_code == 403
    elsewhere = module_issuer.token(scope="storage.read:/elsewhere")
    assert ask(base + "/sub", elsewhere).status_code == 403  # no right at all on the path: refused by the gate
    writer = module_issuer.token(scope=f"storage.modify:/{area}/sub", sub="jdoe")
    destination = issued(base + "/sub/new", writer, DESTINATION)
    assert call("PUT", base + "/sub/new", destination, data=b"new").status_code == 201

    def logged():
        lines = [json.loads(raw) for raw in srv.log().splitlines() if raw.startswith("{")]
        return [line for line in lines if line["path"] == f"/{area}/sub/new" and line["method"] == "PUT"]

    wait_until(logged, timeout=10)
    assert logged()[0]["token"] == "issued:jwt:127.0.0.1:jdoe"


def test_an_issued_token_cannot_ask_for_another(srv, area):
    token = issued(f"{srv.url}/{area}", RW, {"caveats": ["activity:DOWNLOAD,LIST,UPLOAD"], "validity": "PT1H"})
    resp = ask(f"{srv.url}/{area}/f", token)
    assert resp.status_code == 403 and "macaroon" not in resp.json()


# --- malformed requests, other POSTs -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        json.dumps({"validity": "PT1H"}).encode(),
        json.dumps({"caveats": "activity:DOWNLOAD", "validity": "PT1H"}).encode(),
        json.dumps({"caveats": ["activity:DOWNLOAD"]}).encode(),
        json.dumps({"caveats": ["activity:DOWNLOAD"], "validity": "one hour"}).encode(),
        json.dumps({"caveats": ["activity:DOWNLOAD"], "validity": 3600}).encode(),
        json.dumps({"caveats": ["activity:FLY"], "validity": "PT1H"}).encode(),
        json.dumps({"caveats": ["activity:DOWNLOAD", "ip:192.0.2.1"], "validity": "PT1H"}).encode(),
        json.dumps({"caveats": [], "validity": "PT1H"}).encode(),
    ],
)
def test_a_malformed_request_is_400(srv, area, body):
    resp = ask(f"{srv.url}/{area}/f", RW, body)
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"] == "application/json" and "macaroon" not in resp.json()
    assert b"file f" not in resp.content


def test_another_post_body_is_415_and_pacifica_s_post_still_stages(srv, area):
    url = f"{srv.url}/{area}/f"
    for content_type in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
        resp = call("POST", url, RW, headers={"Content-Type": content_type}, data=json.dumps(SOURCE))
        assert resp.status_code == 415, (content_type, resp.text)
        assert b"file f" not in resp.content and "macaroon" not in resp.json()
    staged = {"message": "File was staged", "file": f"{area}/f"}
    assert call("POST", url, RW).json() == staged  # cartd's: no body
    assert call("POST", url, RO).json() == staged
    assert call("POST", url, RO, headers={"Content-Type": "application/json"}).json() == staged  # no body either
    assert call("POST", url, RO, data=b"ignored").json() == staged  # a body of no declared type: ignored, as always


def test_without_a_secret_token_requests_are_501(server_pool, request, tmp_path):
    srv = server_pool(request).start(
        "no-secret", PAI_AUTH_TOKENS_FILE=str(private_file(tmp_path / "tokens", f"rw {RW} operator\n".encode()))
    )
    ident = "t" + secrets.token_hex(4)
    assert call("PUT", srv.id_url(ident), RW, data=b"stored").status_code == 201
    resp = ask(srv.id_url(ident), RW)
    assert resp.status_code == 501 and "token_secret_file" in resp.json()["message"]
    assert call("POST", srv.id_url(ident), RW).status_code == 200  # the stage is Pacifica's, as before
    foreign = mint(SECRET, IssuedGrant("operator", f"/{ident}", frozenset({"storage.read"}), int(time.time()) + 60))
    resp = call("GET", srv.id_url(ident), foreign)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == INVALID


def test_a_new_secret_and_a_hup_revoke_every_token(server_pool, request, tmp_path):
    """gunicorn's HUP starts new workers, which read the secret again: the tokens of the old one stop working."""
    secret = private_file(tmp_path / "secret", SECRET)
    srv = server_pool(request).start(
        "rotate",
        PAI_AUTH_TOKENS_FILE=str(private_file(tmp_path / "tokens", f"rw {RW} operator\n".encode())),
        PAI_AUTH_TOKEN_SECRET_FILE=str(secret),
    )
    ident = "r" + secrets.token_hex(4)
    assert call("PUT", srv.id_url(ident), RW, data=b"stored").status_code == 201
    old = issued(srv.id_url(ident), RW)
    assert call("GET", srv.id_url(ident), old).status_code == 200
    private_file(secret, secrets.token_bytes(32))
    os.kill(srv.proc.pid, signal.SIGHUP)

    def rotated():
        # new connections each time: a kept-alive one may still reach an old worker
        answer = call("HEAD", srv.id_url(ident), old, headers={"Connection": "close"})
        return answer.status_code == 401 and answer.headers["WWW-Authenticate"] == INVALID

    assert wait_until(rotated, timeout=30), srv.log()
    assert call("GET", srv.id_url(ident), issued(srv.id_url(ident), RW)).content == b"stored"


# --- the secret file at start ------------------------------------------------------------------


def start_fails(env, port):
    """(exit status, stderr) of a start that must fail; a start that does not fail is killed."""
    try:
        proc = subprocess.run(
            gunicorn_command(port), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=30, start_new_session=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the server started instead of refusing: {exc.stderr}") from None
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    "case, mode, content, words",
    [
        ("open to everyone", 0o644, SECRET, ["readable or writable by everyone", "0644", "chmod o-rwx"]),
        ("group-writable", 0o660, SECRET, ["writable by its group", "0660", "chmod g-w,o-rwx"]),
        ("short", 0o600, SECRET[:31] + b"\n", ["fewer than 32 bytes"]),
        ("no authentication", 0o600, SECRET, ["token_secret_file needs tokens_file, jwt_issuers or dn_header"]),
    ],
)
def test_a_secret_file_that_cannot_serve_stops_the_start_with_one_line(tmp_path, case, mode, content, words):
    secret = tmp_path / "secret"
    secret.write_bytes(content)
    os.chmod(secret, mode)
    tokens = private_file(tmp_path / "tokens", f"rw {RW}\n".encode())
    settings = {"PAI_PREFIX": str(tmp_path / "prefix"), "PAI_AUTH_TOKEN_SECRET_FILE": str(secret)}
    if case != "no authentication":
        settings["PAI_AUTH_TOKENS_FILE"] = str(tokens)
    port = free_port()
    status, err = start_fails(service_env(tmp_path, **settings), port)
    assert status == 2, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and all(word in errors[0] for word in words), err
    assert "Traceback" not in err and content.decode("latin-1") not in err and RW not in err
    if case != "no authentication":
        assert str(secret) in errors[0]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
