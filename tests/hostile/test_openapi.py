"""The OpenAPI description: served at /openapi.json, reserved as an id, and true to
the live service (schemathesis generates requests from it against the real gunicorn)."""

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

import pyai
from pyai.openapi import load_description
from server import ServerPool, assert_error

METHODS = {"get", "head", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def apiserver(backend, impl, tmp_path_factory):
    pool = ServerPool(tmp_path_factory.mktemp(f"openapi-{impl}"), impl, backend)
    try:
        srv = pool.start("openapi")
        # Something to find: schemathesis's ids are mostly new, these are not.
        for ident, data in (("1234", b"x" * 100), ("a", b"abc"), ("0", b"")):
            assert requests.put(srv.id_url(ident), data=data, timeout=10).status_code == 201
        yield srv
    finally:
        pool.close()


def test_description_is_served_as_json(apiserver):
    resp = requests.get(apiserver.url + "/openapi.json", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    doc = resp.json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["version"] == pyai.__version__
    assert set(doc["paths"]) == {"/", "/openapi.json", "/{id}"}
    assert set(doc["paths"]["/{id}"]) - {"parameters"} == METHODS
    head = requests.head(apiserver.url + "/openapi.json", timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(resp.content)


@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH", "DELETE"])
@pytest.mark.parametrize("target", ["/openapi.json", "/openapi%2Ejson"])
def test_the_description_id_is_reserved(apiserver, method, target):
    resp = requests.request(method, apiserver.url + target, data=b'{"path": "/etc/passwd"}', timeout=10)
    assert_error(resp, 405, apiserver.prefix)
    assert resp.headers["Allow"] == "GET, HEAD"
    assert not (apiserver.prefix / "openapi.json").exists()


# The schema is built from the package's description when the module is collected
# (schemathesis's lazy fixture loader does not work with this pytest); the live
# /openapi.json is checked to be that same document, byte for byte, before each run.
schema = schemathesis.openapi.from_dict(json.loads(load_description()))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_service_keeps_to_its_description(case, apiserver):
    """Generated requests (valid and invalid ids, ranges, dates, bodies): never a 5xx, and
    every answer's status, content type, headers and body are the ones described."""
    assert requests.get(apiserver.url + "/openapi.json", timeout=10).content == load_description()
    response = case.call_and_validate(base_url=apiserver.url, checks=CHECKS, timeout=10)
    assert "Traceback" not in response.text
