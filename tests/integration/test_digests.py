"""Several digests per file, end to end on posix and hpss: what a PUT keeps, what Want-Digest and
Want-Repr-Digest get, digests computed once for files stored without them, and verify."""

import base64
import hashlib
import json
import os
import zlib

import pytest
import requests
from emulator import logged_in
from server import corrupt, service_env

from .test_config import CMD, run_cli

MiB = 1024 * 1024
PYAI_UDA = "/hpss/user/pyai/"


def b64(digest):
    return base64.b64encode(digest).decode()


def adler(data):
    return zlib.adler32(data).to_bytes(4, "big")


def put(srv, ident, data, headers=None):
    return requests.put(srv.id_url(ident), data=data, headers=headers or {}, timeout=30)


def head(srv, ident, **headers):
    return requests.head(srv.id_url(ident), headers=headers, timeout=30)


def stored_set(srv, backend, ident):
    """What the backend itself keeps for the file: {algorithm: hex}, read from the xattr or the UDAs."""
    path = srv.stored_path(ident)
    if backend == "hpss":
        with logged_in(srv.prefix) as hpss:
            names = hpss.get_user_attrs(str(path), [PYAI_UDA + "algorithms"]).get(PYAI_UDA + "algorithms", "")
            values = hpss.get_user_attrs(str(path), [PYAI_UDA + n for n in names.split()]) if names else {}
        return {key[len(PYAI_UDA) :]: value for key, value in values.items()}
    try:
        text = os.getxattr(path, "user.pyai.checksum").decode()
    except OSError:
        return {}
    return dict(word.split(":") for word in text.split())


# 20 MiB: past pyai.archive.beside.START, the digests are hashed on lanes of their own
@pytest.mark.parametrize("size", [0, 70_000, 3 * MiB + 5, 20 * MiB + 5])
@pytest.mark.quick
def test_put_keeps_sha256_adler32_md5_and_want_digest_gets_each(server, backend, uid, size):
    data = os.urandom(size)
    assert put(server, uid, data).status_code == 201
    sha, md5, ad = hashlib.sha256(data).digest(), hashlib.md5(data).digest(), adler(data)
    assert stored_set(server, backend, uid) == {"sha256": sha.hex(), "adler32": ad.hex(), "md5": md5.hex()}
    # what davix sends for gfal-sum ADLER32, and reads back: 8 lowercase hex digits
    for method in (requests.head, requests.get):
        resp = method(server.id_url(uid), headers={"Want-Digest": "adler32"}, timeout=30)
        assert resp.headers["Digest"] == f"ADLER32={ad.hex()}" and "Repr-Digest" not in resp.headers
        assert len(resp.headers["Digest"].split("=")[1]) == 8
    assert head(server, uid, **{"Want-Digest": "MD5"}).headers["Digest"] == f"MD5={b64(md5)}"
    assert head(server, uid, **{"Want-Digest": "sha-256"}).headers["Digest"] == f"SHA-256={b64(sha)}"
    ranked = head(server, uid, **{"Want-Digest": "md5;q=0.2, SHA-256;q=0.9, adler32;q=0"})
    assert ranked.headers["Digest"] == f"SHA-256={b64(sha)},MD5={b64(md5)}"
    both = head(server, uid, **{"Want-Repr-Digest": "adler=9, md5=0, sha-256=3", "Want-Digest": "unixsum"})
    assert both.headers["Repr-Digest"] == f"adler=:{b64(ad)}:, sha-256=:{b64(sha)}:"
    assert "Digest" not in both.headers  # nothing it asked Digest for is kept
    # no Want-*: the primary digest, as before
    plain = head(server, uid)
    assert plain.headers["Digest"] == f"SHA-256={b64(sha)}" and plain.headers["Repr-Digest"] == f"sha-256=:{b64(sha)}:"
    # a range: Repr-Digest only
    if size:
        part = requests.get(server.id_url(uid), headers={"Range": "bytes=0-0", "Want-Repr-Digest": "md5=1"}, timeout=30)
        assert part.status_code == 206 and part.headers["Repr-Digest"] == f"md5=:{b64(md5)}:"
        assert "Digest" not in part.headers


def test_put_digest_adler32_is_checked(server, uid):
    data = os.urandom(200_000)
    wrong = put(server, uid, data, {"Digest": f"adler32={adler(data[1:]).hex()}"})
    assert wrong.status_code == 400 and "adler" in wrong.json()["message"]
    assert head(server, uid).status_code == 404
    assert put(server, uid, data, {"Digest": f"ADLER32={adler(data).hex()}"}).status_code == 201


def test_put_content_md5_in_hex_as_gfal2_sends_it(server, uid):
    data = os.urandom(100_000)
    wrong = put(server, uid, data, {"Content-MD5": hashlib.md5(data[1:]).hexdigest()})
    assert wrong.status_code == 400 and "md5" in wrong.json()["message"]
    assert put(server, uid, data, {"Content-MD5": hashlib.md5(data).hexdigest()}).status_code == 201


def test_a_file_stored_without_digests_gets_them_computed_once_and_kept(make_server, backend, uid):
    srv = make_server("nodigest", PAI_CHECKSUM="none")
    data = os.urandom(MiB + 3)
    assert put(srv, uid, data).status_code == 201
    assert stored_set(srv, backend, uid) == {}
    assert "Digest" not in head(srv, uid).headers  # not asked: nothing computed
    assert stored_set(srv, backend, uid) == {}
    first = head(srv, uid, **{"Want-Digest": "adler32"})
    assert first.headers["Digest"] == f"ADLER32={adler(data).hex()}"
    # kept: the backend now holds it (and only it: nothing is configured)
    assert stored_set(srv, backend, uid) == {"adler32": adler(data).hex()}
    # a second ask reads nothing: the stored value answers even once the bytes change behind the service
    corrupt(srv.stored_path(uid), 0)
    again = head(srv, uid, **{"Want-Digest": "adler32"})
    assert again.headers["Digest"] == first.headers["Digest"]
    md5 = head(srv, uid, **{"Want-Repr-Digest": "md5=5"})  # another algorithm: computed (now) and kept too
    assert set(stored_set(srv, backend, uid)) == {"adler32", "md5"}
    assert md5.headers["Repr-Digest"].startswith("md5=:")


def test_on_demand_digest_fills_in_the_configured_set(server, backend, uid):
    """A file with no digests (stored behind the service): one ask computes the configured ones too."""
    data = b"stored by an older version"
    path = server.stored_path(uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    resp = head(server, uid, **{"Want-Digest": "sha-512"})
    assert resp.headers["Digest"] == f"SHA-512={b64(hashlib.sha512(data).digest())}"
    assert set(stored_set(server, backend, uid)) == {"sha256", "adler32", "md5", "sha512"}
    assert head(server, uid).headers["Digest"] == f"SHA-256={b64(hashlib.sha256(data).digest())}"


def test_no_digest_computed_above_the_size_limit(make_server, backend, uid):
    srv = make_server("small", PAI_CHECKSUM="none", PAI_DIGEST_COMPUTE_MAX="1000")
    assert put(srv, uid, os.urandom(1001)).status_code == 201
    assert "Digest" not in head(srv, uid, **{"Want-Digest": "adler32"}).headers
    assert stored_set(srv, backend, uid) == {}
    assert put(srv, uid + "1", b"x" * 1000).status_code == 201
    assert head(srv, uid + "1", **{"Want-Digest": "adler32"}).headers["Digest"] == f"ADLER32={adler(b'x' * 1000).hex()}"


def test_patched_in_file_gets_digests_on_demand(make_server, backend, uid, tmp_path_factory):
    root = tmp_path_factory.mktemp("digestroot")
    srv = make_server("digestpatch", PAI_PATCH_ROOTS=str(root))
    src = root / f"in-{uid}"
    data = os.urandom(100_000)
    src.write_bytes(data)
    resp = requests.patch(srv.id_url(uid), data=json.dumps({"path": str(src)}), timeout=10)
    assert resp.status_code == 200, resp.text
    assert "Digest" not in head(srv, uid).headers
    got = head(srv, uid, **{"Want-Digest": "adler32", "Want-Repr-Digest": "sha-256=1"})
    assert got.headers["Digest"] == f"ADLER32={adler(data).hex()}"
    assert got.headers["Repr-Digest"] == f"sha-256=:{b64(hashlib.sha256(data).digest())}:"
    assert set(stored_set(srv, backend, uid)) == {"sha256", "adler32", "md5"}


def test_verify_compares_every_stored_digest(make_server, backend, impl, tmp_path, uid):
    srv = make_server("verifyall")
    assert put(srv, uid, os.urandom(300_000)).status_code == 201
    if backend == "hpss":
        env = service_env(tmp_path, PYAI_IMPL=impl, PAI_BACKEND_TYPE="hpss", PAI_USE_ID2FILENAME="true")
    else:
        env = service_env(tmp_path, PYAI_IMPL=impl, PAI_BACKEND_TYPE="posix")
    cmd = [CMD, "--prefix", str(srv.prefix), "verify", uid]
    rc, out, err = run_cli(cmd, env)
    assert rc == 0 and "1 ok" in out, (out, err)
    corrupt(srv.stored_path(uid), 1000, 0x80)
    rc, out, err = run_cli(cmd, env)
    assert rc == 1 and f"MISMATCH {uid}: the bytes do not match the stored sha256, md5, adler32 checksum" in out, (
        out,
        err,
    )
