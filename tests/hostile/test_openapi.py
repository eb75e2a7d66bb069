"""The OpenAPI description: served at /openapi.json, reserved as an id, and true to
the live service (schemathesis generates requests from it against the real gunicorn),
with authentication off (the default) and on."""

import base64
import hashlib
import json
import re
import secrets

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server import assert_error

import pyai
from pyai.web.openapi import load_description

METHODS = {"get", "head", "put", "post", "patch", "delete"}
WRITES = {"put", "patch", "delete"}
TAPE_PATHS = {
    "/.well-known/wlcg-tape-rest-api",
    "/api/v1/stage",
    "/api/v1/stage/{requestId}",
    "/api/v1/stage/{requestId}/cancel",
    "/api/v1/release/{requestId}",
    "/api/v1/archiveinfo",
}
# Something to find: schemathesis's ids are mostly new, these are not.
SEEDS = {"1234": b"x" * 100, "a": b"abc", "0": b""}
RW_TOKEN = "rw-token-for-the-openapi-tests-01"
RO_TOKEN = "ro-token-for-the-openapi-tests-02"
WITH_TOKEN = {"Authorization": f"Bearer {RW_TOKEN}"}


def start_seeded(make_server, name, headers=None, **settings):
    srv = make_server(name, **settings)
    for ident, data in SEEDS.items():
        assert requests.put(srv.id_url(ident), data=data, headers=headers, timeout=10).status_code == 201
    return srv


@pytest.fixture(scope="module")
def apiserver(make_server):
    return start_seeded(make_server, "openapi")


@pytest.fixture(scope="module")
def authserver(make_server, tmp_path_factory):
    """Authentication on: a tokens file with a read-write and a read-only token (mode 0600, as the service demands)."""
    tokens = tmp_path_factory.mktemp("openapi-auth") / "tokens"
    tokens.touch(mode=0o600)
    tokens.write_text(f"rw {RW_TOKEN}\nro {RO_TOKEN}\n")
    return start_seeded(make_server, "openapi-auth", WITH_TOKEN, PAI_AUTH_TOKENS_FILE=str(tokens))


def test_description_is_served_as_json(apiserver):
    resp = requests.get(apiserver.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    doc = resp.json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["version"] == pyai.__version__
    assert set(doc["paths"]) == {"/", "/openapi.json", "/{id}", "/healthz", "/readyz", "/metrics"} | TAPE_PATHS
    assert set(doc["paths"]["/{id}"]) - {"parameters", "description"} == METHODS  # PROPFIND: in the description
    head = requests.head(apiserver.url + "/openapi.json", timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(resp.content)


@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH", "DELETE"])
@pytest.mark.parametrize("target", ["/openapi.json", "/openapi%2Ejson", "/healthz", "/readyz", "/metrics"])
def test_the_service_paths_are_reserved_ids(apiserver, method, target):
    resp = requests.request(method, apiserver.url + target, data=b'{"path": "/etc/passwd"}', timeout=10)
    assert_error(resp, 405, apiserver.prefix)
    assert resp.headers["Allow"] == "GET, HEAD"
    assert not (apiserver.prefix / target.replace("%2E", ".").lstrip("/")).exists()


# The schema is built from the package's description when the module is collected
# (schemathesis's lazy fixture loader does not work with this pytest); the live
# /openapi.json is checked to be that same document, byte for byte, before each run.
schema = schemathesis.openapi.from_dict(json.loads(load_description()))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_service_keeps_to_its_description(case, apiserver):
    """Generated requests (valid and invalid ids, ranges, dates, bodies): never a 5xx, and
    every answer's status, content type, headers and body are the ones described."""
    assert requests.get(apiserver.url + "/openapi.json", timeout=10).content == load_description()
    response = case.call_and_validate(base_url=apiserver.url, checks=CHECKS, timeout=10)
    assert "Traceback" not in response.text


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_service_keeps_to_its_description_with_auth_on(case, authserver):
    """The same with a tokens file, every request carrying the read-write token: the
    operations are really reached (no refusal of the token) and still answer as described."""
    assert requests.get(authserver.url + "/openapi.json", headers=WITH_TOKEN, timeout=10).content == load_description()
    response = case.call_and_validate(base_url=authserver.url, headers=WITH_TOKEN, checks=CHECKS, timeout=10)
    # (a 403 without the challenge is PATCH refusing a source outside the roots: not about the token)
    assert response.status_code != 401 and "WWW-Authenticate" not in response.headers, response.text
    assert "Traceback" not in response.text


def resolved(doc, node):
    """``node`` with its local ``$ref`` (``#/components/...``) followed."""
    while "$ref" in node:
        target = doc
        for key in node["$ref"].removeprefix("#/").split("/"):
            target = target[key]
        node = target
    return node


def documented_header(doc, path, method, status, name):
    """A response header of one operation, None when it (or the answer) is not described."""
    responses = doc["paths"][path][method]["responses"]
    if status not in responses:
        return None
    response = resolved(doc, responses[status])
    header = response.get("headers", {}).get(name)
    return None if header is None else resolved(doc, header)


def conforms(value, header):
    """The value matches the header's documented pattern or constant."""
    schema = header["schema"]
    if "const" in schema:
        return value == schema["const"]
    return re.fullmatch(schema["pattern"], value) is not None


def test_description_declares_auth_and_digests_as_the_service_answers(authserver):
    """The bearer scheme, the 401/403 answers and the digest headers are described, and a
    live server with authentication on answers as described."""
    assert requests.get(authserver.url + "/openapi.json", timeout=10).status_code == 401
    doc = requests.get(authserver.url + "/openapi.json", headers=WITH_TOKEN, timeout=10).json()
    bearer = doc["components"]["securitySchemes"]["bearerAuth"]
    assert bearer["type"] == "http" and bearer["scheme"] == "bearer" and "off by default" in bearer["description"]
    assert {} in doc["security"] and {"bearerAuth": []} in doc["security"]
    assert doc["paths"]["/"]["get"]["security"] == [] == doc["paths"]["/"]["head"]["security"]
    for method in METHODS:
        assert documented_header(doc, "/{id}", method, "401", "WWW-Authenticate")["required"] is True
        assert (documented_header(doc, "/{id}", method, "403", "WWW-Authenticate") is not None) is (method in WRITES)
    # the digest headers: both on whole answers, only Repr-Digest on a part
    for method, status in (("get", "200"), ("head", "204")):
        assert documented_header(doc, "/{id}", method, status, "Digest") is not None
    assert documented_header(doc, "/{id}", "get", "206", "Digest") is None
    put_headers = {p["name"] for p in doc["paths"]["/{id}"]["put"]["parameters"] if p["in"] == "header"}
    assert {"Content-Digest", "Digest", "Content-MD5"} <= put_headers
    assert all(
        word in doc["paths"]["/{id}"]["put"]["responses"]["400"]["description"]
        for word in ("does not match", "malformed", "does not know")
    )

    # live: the health check is open, the rest answers 401 with the documented challenge
    assert requests.get(authserver.url + "/", timeout=10).status_code == 200
    for method, credential in (
        ("get", None),
        ("head", None),
        ("put", "Bearer not-a-configured-token-0000"),
        ("delete", "Basic dXNlcjpwYXNzd29yZA=="),
    ):
        headers = {} if credential is None else {"Authorization": credential}
        resp = requests.request(method, authserver.id_url("1234"), headers=headers, data=b"new", timeout=10)
        assert resp.status_code == 401, resp.text
        assert conforms(
            resp.headers["WWW-Authenticate"], documented_header(doc, "/{id}", method, "401", "WWW-Authenticate")
        )
        assert resp.headers["WWW-Authenticate"].endswith('error="invalid_token"') is (credential or "").startswith(
            "Bearer"
        )
        if method != "head":
            schema["/{id}"][method.upper()].validate_response(resp)
    for method in WRITES:  # a read-only token: 403 with the documented challenge, nothing changed
        resp = requests.request(
            method, authserver.id_url("1234"), headers={"Authorization": f"Bearer {RO_TOKEN}"}, timeout=10
        )
        assert resp.status_code == 403, resp.text
        assert conforms(
            resp.headers["WWW-Authenticate"], documented_header(doc, "/{id}", method, "403", "WWW-Authenticate")
        )
        schema["/{id}"][method.upper()].validate_response(resp)

    # live: the digests of a file of its own (schemathesis may have deleted the seeds), as documented and true
    data, url = b"digested" * 100, authserver.id_url(f"digests-{secrets.token_hex(4)}")
    assert requests.put(url, data=data, headers=WITH_TOKEN, timeout=10).status_code == 201
    b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    whole = requests.get(url, headers=WITH_TOKEN, timeout=10)
    part = requests.get(url, headers={**WITH_TOKEN, "Range": "bytes=0-9"}, timeout=10)
    head = requests.head(url, headers=WITH_TOKEN, timeout=10)
    for resp, method in ((whole, "get"), (head, "head"), (part, "get")):
        status = str(resp.status_code)
        assert resp.headers["Repr-Digest"] == f"sha-256=:{b64}:"
        assert conforms(resp.headers["Repr-Digest"], documented_header(doc, "/{id}", method, status, "Repr-Digest"))
        if status == "206":
            assert "Digest" not in resp.headers
        else:
            assert resp.headers["Digest"] == f"SHA-256={b64}"
            assert conforms(resp.headers["Digest"], documented_header(doc, "/{id}", method, status, "Digest"))
