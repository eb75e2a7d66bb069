"""deploy/nginx/pyai-x509.conf in front of pyai: X.509 client certificates, mapped by a grid-mapfile.

A real nginx (nginx-light) runs the shipped TLS front end (see ``deploy.x509``) before a real
gunicorn: it verifies client certificates of a throwaway CA and passes the subject DN of a
verified one in X-SSL-Client-DN; pyai believes that header from 127.0.0.1 (nginx's address) only,
and maps the DN by a grid-mapfile that writes one DN in the slash form (with a comma and a
non-ASCII letter, which nginx sends escaped) and one in RFC 2253.  Checked from outside: a
mapped ``rw`` certificate writes and reads (and asks for a token for its job, and owns its
Tape API requests), a mapped ``ro`` one is 403 on PUT, an unmapped one and none at all are 401, a
header a client sends itself counts for nothing (through nginx, which replaces it, or straight to
pyai from another address), and a certificate of another CA never passes a DN on, with the
control experiment: without the file's ``map`` on ``$ssl_client_verify`` it would.
"""

import http.client
import json
import secrets
from types import SimpleNamespace

import pytest
import requests
from server import ROOT, assert_error, wait_until

from deploy.x509 import X509_CONF, Ca, X509Nginx

TIMEOUT = 30
HEADER = "X-SSL-Client-DN"
ALICE = [("C", "CH"), ("O", "pyai test"), ("CN", "M\u00fcller, Alice")]
ALICE_RFC2253 = r"CN=M\C3\BCller\, Alice,O=pyai test,C=CH"  # as nginx's $ssl_client_s_dn has it
BOB = [("C", "CH"), ("O", "pyai test"), ("CN", "bob")]
MALLORY = [("C", "CH"), ("O", "pyai test"), ("CN", "mallory")]
GRIDMAP = (
    "# the archive's X.509 clients: one DN in each form\n"
    '"/C=CH/O=pyai test/CN=M\u00fcller, Alice" rw ingest\n'
    '"CN=bob,O=pyai test,C=CH"                 ro reader   # reads and stages\n'
)
TOKEN = "rw-" + secrets.token_hex(12)
NO_TOKEN = 'Bearer realm="pyai"'


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The archive's CA (nginx's certificate, the clients'), and another CA that signs a forged Alice."""
    base = tmp_path_factory.mktemp("x509-pki")
    ca, foreign = Ca(base, "archive"), Ca(base, "foreign")
    return SimpleNamespace(
        ca=ca,
        alice=ca.client("alice", ALICE),
        bob=ca.client("bob", BOB),
        mallory=ca.client("mallory", MALLORY),
        forged=foreign.client("forged-alice", ALICE),
    )


@pytest.fixture(scope="module")
def srv(server_pool, request, tmp_path_factory):
    """pyai with client certificates' DNs from 127.0.0.1, a static rw token and a token secret."""
    base = tmp_path_factory.mktemp("x509-pyai")
    gridmap = base / "grid-mapfile"
    gridmap.write_text(GRIDMAP, encoding="utf-8")
    gridmap.chmod(0o644)
    tokens = base / "tokens"
    tokens.write_text(f"rw {TOKEN} operator\n")
    tokens.chmod(0o600)
    secret = base / "secret"
    secret.write_bytes(secrets.token_bytes(32))
    secret.chmod(0o600)
    srv = server_pool(request).start(
        "behind-tls",
        PAI_AUTH_DN_HEADER=HEADER,
        PAI_AUTH_DN_PROXIES="127.0.0.1",
        PAI_AUTH_GRIDMAP_FILE=str(gridmap),
        PAI_AUTH_TOKENS_FILE=str(tokens),
        PAI_AUTH_TOKEN_SECRET_FILE=str(secret),
        PAI_TRANSFER_LOG=str(base / "transfer.log"),
    )
    srv.transfer_log = base / "transfer.log"
    return srv


def start_front(srv, pki, work, edit=None):
    return X509Nginx(work, srv.port, pki.ca, pki.ca.ca_file, edit=edit).start()


@pytest.fixture(scope="module")
def front(srv, pki, tmp_path_factory):
    nginx = start_front(srv, pki, tmp_path_factory.mktemp("nginx-x509"))
    try:
        yield nginx
    finally:
        nginx.stop()


def call(method, nginx, path, cert=None, **kwargs):
    """``method`` on ``path`` through ``nginx`` over TLS, with the client certificate ``cert`` (or none)."""
    return requests.request(method, nginx.url + path, cert=cert, verify=nginx.ca.ca_file, timeout=TIMEOUT, **kwargs)


def new_id():
    return f"x509-{secrets.token_hex(6)}"


def stored(nginx, pki):
    """The id of a new file, stored by Alice."""
    ident = new_id()
    put = call("PUT", nginx, f"/{ident}", pki.alice, data=b"stored by alice")
    assert put.status_code == 201, (put.status_code, put.text)
    return ident


def log_line(srv, **match):
    """The transfer log's one line whose fields equal ``match`` (it is written as the exchange ends)."""
    found = []

    def look():
        text = srv.transfer_log.read_text() if srv.transfer_log.exists() else ""
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        found[:] = [line for line in lines if all(line.get(key) == value for key, value in match.items())]
        return found

    assert wait_until(look, timeout=10, interval=0.05), f"no line with {match}"
    assert len(found) == 1, found
    return found[0]


# --- certificates through nginx ---------------------------------------------------------------


@pytest.mark.quick
def test_a_mapped_rw_client_writes_and_reads(srv, front, pki):
    ident = new_id()
    data = secrets.token_bytes(64 * 1024)
    put = call("PUT", front, f"/{ident}", pki.alice, data=data)
    assert put.status_code == 201, (put.status_code, put.text)
    got = call("GET", front, f"/{ident}", pki.alice)
    assert got.status_code == 200 and got.content == data
    assert call("HEAD", front, f"/{ident}", pki.alice).status_code == 204  # (Pacifica's HEAD)
    line = log_line(srv, id=ident, method="PUT")
    assert (line["status"], line["token"], line["client"]) == (201, "dn:ingest", "127.0.0.1")
    assert log_line(srv, id=ident, method="GET")["token"] == "dn:ingest"
    assert call("DELETE", front, f"/{ident}", pki.alice).status_code in (200, 204)


def test_a_mapped_ro_client_reads_and_gets_403_on_put(srv, front, pki):
    ident = stored(front, pki)
    got = call("GET", front, f"/{ident}", pki.bob)
    assert got.status_code == 200 and got.content == b"stored by alice"
    refused = call("PUT", front, f"/{new_id()}", pki.bob, data=b"x")
    body = assert_error(refused, 403)
    assert body["message"] == "the client certificate's DN is mapped read-only and PUT changes the archive"
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="pyai", error="insufficient_scope"'
    assert call("DELETE", front, f"/{ident}", pki.bob).status_code == 403
    assert log_line(srv, id=ident, method="GET")["token"] == "dn:reader"


def test_an_unmapped_client_is_401(front, pki):
    ident = stored(front, pki)
    for method in ("GET", "PUT"):
        refused = call(method, front, f"/{ident}", pki.mallory, data=b"x" if method == "PUT" else None)
        body = assert_error(refused, 401)
        assert body["message"] == "the client certificate's DN is not mapped here"
        assert refused.headers["WWW-Authenticate"] == NO_TOKEN


def test_no_certificate_is_401_and_a_bearer_token_still_serves(srv, front, pki):
    ident = stored(front, pki)
    refused = call("GET", front, f"/{ident}")
    body = assert_error(refused, 401)
    assert "a bearer token" in body["message"] and "or a client certificate it knows" in body["message"]
    assert refused.headers["WWW-Authenticate"] == NO_TOKEN
    with_token = call("GET", front, f"/{ident}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert with_token.status_code == 200 and with_token.content == b"stored by alice"
    # a token beside a certificate is the one checked: a bad one is not rescued by Alice's certificate
    bad = call("GET", front, f"/{ident}", pki.alice, headers={"Authorization": "Bearer not-a-configured-token"})
    assert_error(bad, 401)
    assert bad.headers["WWW-Authenticate"] == 'Bearer realm="pyai", error="invalid_token"'


@pytest.mark.parametrize("name", [HEADER, HEADER.lower(), HEADER.upper()])
def test_a_dn_header_a_client_sends_through_nginx_is_replaced(front, pki, name):
    """nginx sets the header itself: a client's own never reaches pyai, with a certificate or without."""
    ident = stored(front, pki)
    alone = call("GET", front, f"/{ident}", headers={name: ALICE_RFC2253})
    assert "or a client certificate it knows" in assert_error(alone, 401)["message"]  # no DN reached pyai
    beside = call("GET", front, f"/{ident}", pki.mallory, headers={name: ALICE_RFC2253})
    assert assert_error(beside, 401)["message"] == "the client certificate's DN is not mapped here"  # Mallory's


def straight_to_pyai(srv, source, method, path, headers, body=None):
    """(status, body) of a request sent to pyai itself, not through nginx, from the address ``source``."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_dn_header_sent_straight_to_pyai_is_believed_only_from_the_front_end(front, srv, pki):
    """pyai believes the header from dn_proxies (127.0.0.1, nginx's address) alone: from 127.0.0.2,
    another host for it, the same request is a client's claim and counts for nothing."""
    ident = new_id()
    status, body = straight_to_pyai(srv, "127.0.0.2", "PUT", f"/{ident}", {HEADER: ALICE_RFC2253}, b"claimed")
    assert status == 401 and b"or a client certificate it knows" in body
    assert call("GET", front, f"/{ident}", pki.alice).status_code == 404  # nothing was stored
    # the control: the same request from nginx's address is believed (which is why pyai listens on loopback)
    status, _ = straight_to_pyai(srv, "127.0.0.1", "PUT", f"/{ident}", {HEADER: ALICE_RFC2253}, b"from 127.0.0.1")
    assert status == 201


def test_a_certificate_of_another_ca_passes_no_dn(srv, pki, tmp_path):
    """A forged Alice (her DN, another CA): nginx refuses her with the shipped ``optional``; with
    the documented alternative for large CA bundles (``optional_no_ca`` and the CAs as
    ``ssl_trusted_certificate``) it lets her in, and the ``map`` on ``$ssl_client_verify`` sends
    no DN for her.  The control: without the map, her DN would reach pyai and be Alice's."""

    def trusted_only(text):
        text = text.replace("ssl_verify_client optional;", "ssl_verify_client optional_no_ca;")
        return text.replace("ssl_client_certificate ", "ssl_trusted_certificate ")

    def without_map(text):
        return trusted_only(text).replace(f"{HEADER} $pyai_client_dn;", f"{HEADER} $ssl_client_s_dn;")

    shipped = start_front(srv, pki, tmp_path / "shipped")
    try:
        refused = call("PUT", shipped, f"/{new_id()}", pki.forged, data=b"forged")
        assert refused.status_code == 400 and "SSL certificate error" in refused.text  # nginx's own answer
    finally:
        shipped.stop()
    lenient = start_front(srv, pki, tmp_path / "no-ca", edit=trusted_only)
    try:
        refused = call("PUT", lenient, f"/{new_id()}", pki.forged, data=b"forged")
        assert "or a client certificate it knows" in assert_error(refused, 401)["message"]  # no DN passed
        assert call("PUT", lenient, f"/{new_id()}", pki.alice, data=b"real").status_code == 201  # verified: passed
    finally:
        lenient.stop()
    unguarded = start_front(srv, pki, tmp_path / "no-map", edit=without_map)
    try:
        forged = call("PUT", unguarded, f"/{new_id()}", pki.forged, data=b"forged")
        assert forged.status_code == 201, "without the map, a certificate of any CA would name any DN"
    finally:
        unguarded.stop()


# --- what a DN may do beyond files ----------------------------------------------------------------


def test_a_mapped_client_gets_a_token_for_its_job(srv, front, pki):
    """gfal2 and FTS with a certificate ask for a token to hand on (pyai.web.issued_tokens)."""
    ident = stored(front, pki)
    document = json.dumps({"caveats": ["activity:DOWNLOAD,LIST"], "validity": "PT10M"})
    headers = {"Content-Type": "application/macaroon-request"}
    answer = call("POST", front, f"/{ident}", pki.alice, data=document, headers=headers)
    assert answer.status_code == 200, answer.text
    token = answer.json()["macaroon"]
    got = call("GET", front, f"/{ident}", headers={"Authorization": f"Bearer {token}"})  # no certificate
    assert got.status_code == 200 and got.content == b"stored by alice"
    assert log_line(srv, id=ident, method="GET", token="issued:dn:ingest")["status"] == 200
    upload = json.dumps({"caveats": ["activity:UPLOAD"], "validity": "PT10M"})
    refused = call("POST", front, f"/{ident}", pki.bob, data=upload, headers=headers)
    assert refused.status_code == 403, refused.text  # Bob's DN is ro: he may not hand on a write


def test_tape_requests_belong_to_the_dn_that_made_them(front, pki):
    ident = stored(front, pki)
    made = call("POST", front, "/api/v1/stage", pki.alice, json={"files": [{"path": f"/{ident}"}]})
    assert made.status_code == 201, made.text
    request_id = made.json()["requestId"]
    assert call("GET", front, f"/api/v1/stage/{request_id}", pki.alice).status_code == 200
    assert call("GET", front, f"/api/v1/stage/{request_id}", pki.bob).status_code == 404  # another owner's
    with_token = call("GET", front, f"/api/v1/stage/{request_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert with_token.status_code == 404


# --- the documentation ------------------------------------------------------------------------------


def test_the_documentation_shows_the_shipped_file():
    """docs/configuration.md shows the whole front end, as shipped (its opening comment aside)."""
    text = X509_CONF.read_text()
    body = text.split("\n\n", 1)[1]
    assert body.startswith("# The subject DN") and body in (ROOT / "docs" / "configuration.md").read_text()
