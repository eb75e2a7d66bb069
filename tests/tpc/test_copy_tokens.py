"""COPY under WLCG tokens, as FTS runs a token transfer: the client's token authorizes the COPY
at the active end (a pull needs storage.create there, a push storage.read), and the passive
end's token travels as TransferHeaderAuthorization.  With gfal2 too, in both modes."""

import os
import subprocess
import zlib
from pathlib import Path

import pytest
import requests
from fixtures.gfal import GFAL_TIMEOUT, SYSTEM_PYTHON
from fixtures.issuer import AUDIENCE

from tpc.conftest import TPC
from tpc.test_copy_raw import check_stream

SCRIPT = Path(__file__).with_name("gfal_copy_with_tokens.py")


@pytest.fixture(scope="module")
def token_pair(server_pool, request, module_issuer):
    pool = server_pool(request)
    settings = dict(
        PAI_AUTH_JWT_ISSUERS=f"{module_issuer.url} /",
        PAI_AUTH_JWT_AUDIENCES=AUDIENCE,
        PAI_AUTH_JWT_CA_FILE=module_issuer.ca_file,
        **TPC,
    )
    return pool.start("jwt-a", **settings), pool.start("jwt-b", **settings)


def bearer(token):
    return f"Bearer {token}"


def stored(srv, token, ident, data):
    resp = requests.put(srv.id_url(ident), data=data, headers={"Authorization": bearer(token)}, timeout=30)
    assert resp.status_code == 201, resp.text


def test_a_pull_with_tokens_for_both_ends(token_pair, module_issuer, int_id):
    a, b = token_pair
    data = os.urandom(300_000)
    stored(a, module_issuer.token("storage.create:/"), int_id, data)
    headers = {
        "Authorization": bearer(module_issuer.token("storage.create:/")),
        "Source": a.id_url(int_id),
        "TransferHeaderAuthorization": bearer(module_issuer.token("storage.read:/")),
    }
    assert check_stream(requests.request("COPY", b.id_url(int_id), headers=headers, timeout=60)) == "success: Created"
    assert b.stored_path(int_id).read_bytes() == data


def test_a_pull_without_the_sources_token_is_403(token_pair, module_issuer, int_id):
    a, b = token_pair
    stored(a, module_issuer.token("storage.create:/"), int_id, b"guarded")
    headers = {"Authorization": bearer(module_issuer.token("storage.create:/")), "Source": a.id_url(int_id)}
    resp = requests.request("COPY", b.id_url(int_id), headers=headers, timeout=60)
    assert resp.status_code == 403, resp.text
    assert "TransferHeaderAuthorization" in resp.json()["message"]
    assert not b.stored_path(int_id).exists()


@pytest.mark.parametrize(
    "pull, scope",
    [(True, "storage.read:/"), (False, "storage.create:/"), (True, "storage.create:/elsewhere")],
)
def test_the_active_end_needs_the_rights_of_a_put_or_a_get(token_pair, module_issuer, int_id, pull, scope):
    a, b = token_pair
    stored(a, module_issuer.token("storage.create:/"), int_id, b"x")
    remote = {"Source": a.id_url(int_id)} if pull else {"Destination": b.id_url(int_id)}
    active = b if pull else a
    headers = {"Authorization": bearer(module_issuer.token(scope)), **remote}
    resp = requests.request("COPY", active.id_url(int_id), headers=headers, timeout=60)
    assert resp.status_code == 403, resp.text
    assert not b.stored_path(int_id).exists()


def test_a_push_with_tokens_for_both_ends(token_pair, module_issuer, int_id):
    a, b = token_pair
    data = os.urandom(200_000)
    stored(a, module_issuer.token("storage.create:/"), int_id, data)
    headers = {
        "Authorization": bearer(module_issuer.token("storage.read:/")),
        "Destination": b.id_url(int_id),
        "TransferHeaderAuthorization": bearer(module_issuer.token("storage.create:/")),
    }
    assert check_stream(requests.request("COPY", a.id_url(int_id), headers=headers, timeout=60)) == "success: Created"
    assert b.stored_path(int_id).read_bytes() == data


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_gfal_copies_third_party_with_tokens(token_pair, module_issuer, int_id, gfal, mode):
    a, b = token_pair
    data = os.urandom(1_000_000)
    stored(a, module_issuer.token("storage.create:/"), int_id, data)
    both = module_issuer.token("storage.read:/ storage.create:/")
    proc = subprocess.run(
        [SYSTEM_PYTHON, str(SCRIPT), a.id_url(int_id), both, b.id_url(int_id), both, mode],
        env=gfal.env,
        capture_output=True,
        text=True,
        timeout=GFAL_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"TRANSFER:TYPE 3rd {mode}" in proc.stdout, proc.stdout
    assert b.stored_path(int_id).read_bytes() == data
    summed = requests.head(
        b.id_url(int_id), headers={"Want-Digest": "adler32", "Authorization": bearer(both)}, timeout=10
    )
    assert summed.headers["Digest"].lower() == f"adler32={zlib.adler32(data):08x}"


def test_a_pull_over_https_checks_the_certificate(server_pool, request, module_issuer, int_id):
    """The source's certificate is checked against [tpc] ca_file (the system's CAs do not know
    the test CA: without it the copy fails, and keeps nothing)."""
    source = module_issuer.url + "/.well-known/openid-configuration"
    expected = requests.get(source, verify=module_issuer.ca_file, timeout=10).content
    pool = server_pool(request)
    trusting = pool.start("https-ca", PAI_TPC_CA_FILE=module_issuer.ca_file, **TPC)
    resp = requests.request("COPY", trusting.id_url(int_id), headers={"Source": source}, timeout=60)
    assert check_stream(resp) == "success: Created"
    assert trusting.stored_path(int_id).read_bytes() == expected
    plain = pool.start("https-system", **TPC)
    last = check_stream(requests.request("COPY", plain.id_url(int_id), headers={"Source": source}, timeout=60))
    assert last.startswith("failure: ") and "certificate" in last, last
    assert not plain.stored_path(int_id).exists()


def test_a_pull_over_a_stored_file_needs_modify(server_pool, request, module_issuer, token_pair, int_id):
    """With allow_overwrite a pull may replace a stored file, as a PUT may: with storage.modify."""
    a, _ = token_pair
    replacing = server_pool(request).start(
        "jwt-overwrite",
        PAI_ALLOW_OVERWRITE="true",
        PAI_AUTH_JWT_ISSUERS=f"{module_issuer.url} /",
        PAI_AUTH_JWT_AUDIENCES=AUDIENCE,
        PAI_AUTH_JWT_CA_FILE=module_issuer.ca_file,
        **TPC,
    )
    stored(a, module_issuer.token("storage.create:/"), int_id, b"new bytes")
    stored(replacing, module_issuer.token("storage.create:/"), int_id, b"old bytes")
    headers = {"Source": a.id_url(int_id), "TransferHeaderAuthorization": bearer(module_issuer.token("storage.read:/"))}
    create = {"Authorization": bearer(module_issuer.token("storage.create:/")), **headers}
    refused = requests.request("COPY", replacing.id_url(int_id), headers=create, timeout=60)
    assert refused.status_code == 403, refused.text
    assert replacing.stored_path(int_id).read_bytes() == b"old bytes"
    modify = {"Authorization": bearer(module_issuer.token("storage.modify:/")), **headers}
    resp = requests.request("COPY", replacing.id_url(int_id), headers=modify, timeout=60)
    assert check_stream(resp) == "success: Created"
    assert replacing.stored_path(int_id).read_bytes() == b"new bytes"
