"""Checksums end to end: computed on PUT, sent on HEAD/GET, client digests checked, `verify`."""

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import zlib

import pytest
import requests
from server import assert_error, corrupt, raw, service_env

from .test_config import CMD, run_cli

XATTRS = pytest.mark.posix_only("xattrs and sidecars are the posix store (hpss keeps UDAs: tests/hpss)")
MiB = 1024 * 1024


def b64(data):
    return base64.b64encode(data).decode()


def sha256(data):
    return hashlib.sha256(data).digest()


def put(srv, ident, data, headers=None):
    return requests.put(srv.id_url(ident), data=data, headers=headers or {}, timeout=30)


def chunks(data, size=100_000):
    """A generator body: requests sends it chunked (the portable receive path)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_digest_headers(headers, data, partial=False):
    digest = b64(sha256(data))
    assert headers.get("Repr-Digest") == f"sha-256=:{digest}:", dict(headers)
    if partial:
        assert "Digest" not in headers, dict(headers)
    else:
        assert headers.get("Digest") == f"SHA-256={digest}", dict(headers)


def assert_nothing_stored(srv, ident):
    assert requests.head(srv.id_url(ident), timeout=10).status_code == 404
    assert requests.get(srv.id_url(ident), timeout=10).status_code == 404
    assert srv.temp_files() == []


# ---- the stored checksum on HEAD and GET --------------------------------------


@pytest.mark.parametrize("size", [0, 30, 64 * 1024, 3 * MiB + 17])
def test_head_and_get_send_the_checksum(server, uid, size):
    data = os.urandom(size)
    assert put(server, uid, data).status_code == 201
    head = requests.head(server.id_url(uid), timeout=10)
    assert head.status_code == 204
    assert_digest_headers(head.headers, data)
    get = requests.get(server.id_url(uid), timeout=10)
    assert get.status_code == 200 and get.content == data
    assert_digest_headers(get.headers, data)


def test_partial_get_sends_only_repr_digest(server, uid):
    data = os.urandom(100_000)
    assert put(server, uid, data).status_code == 201
    part = requests.get(server.id_url(uid), headers={"Range": "bytes=10-99"}, timeout=10)
    assert part.status_code == 206 and part.content == data[10:100]
    assert_digest_headers(part.headers, data, partial=True)
    original = requests.get(server.id_url(uid) + "?byte_range=10-100", timeout=10)
    assert original.content == data[10:100]
    assert_digest_headers(original.headers, data, partial=True)


def test_chunked_put_is_checksummed(server, uid):
    data = os.urandom(MiB + 5)
    assert put(server, uid, chunks(data)).status_code == 201
    assert_digest_headers(requests.head(server.id_url(uid), timeout=10).headers, data)


def test_files_stored_before_checksums_get_no_digest(server, uid):
    path = server.stored_path(uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stored by an older version")
    head = requests.head(server.id_url(uid), timeout=10)
    get = requests.get(server.id_url(uid), timeout=10)
    assert head.status_code == 204 and get.status_code == 200
    for headers in (head.headers, get.headers):
        assert "Digest" not in headers and "Repr-Digest" not in headers


# ---- client digests checked on PUT --------------------------------------------

DATA = os.urandom(200_000)
GOOD = {
    "content-digest sha-256": {"Content-Digest": f"sha-256=:{b64(sha256(DATA))}:"},
    "content-digest sha-512": {"Content-Digest": f"sha-512=:{b64(hashlib.sha512(DATA).digest())}:"},
    "digest SHA-256": {"Digest": f"SHA-256={b64(sha256(DATA))}"},
    "digest md5 lower case": {"Digest": f"md5={b64(hashlib.md5(DATA).digest())}"},
    "content-md5": {"Content-MD5": b64(hashlib.md5(DATA).digest())},
    "unknown beside known": {"Content-Digest": f"crc32c=:AAAAAA==:, sha-256=:{b64(sha256(DATA))}:"},
}
BAD = {
    "content-digest sha-256": ({"Content-Digest": f"sha-256=:{b64(sha256(DATA[1:]))}:"}, "sha-256"),
    "content-digest sha-512": ({"Content-Digest": f"sha-512=:{b64(hashlib.sha512(b'x').digest())}:"}, "sha-512"),
    "digest SHA-256": ({"Digest": f"SHA-256={b64(sha256(b'x'))}"}, "sha-256"),
    "content-md5": ({"Content-MD5": b64(hashlib.md5(b"x").digest())}, "md5"),
    "one of two wrong": (
        {"Content-Digest": f"sha-256=:{b64(sha256(DATA))}:", "Content-MD5": b64(hashlib.md5(b"x").digest())},
        "md5",
    ),
}
MALFORMED = {
    "not a byte sequence": {"Content-Digest": f"sha-256={b64(sha256(DATA))}"},
    "not base64": {"Digest": "SHA-256=@@@"},
    "wrong length": {"Content-MD5": b64(sha256(DATA))},
    "only unknown algorithms": {"Digest": "UNIXsum=1234"},
}


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("name", GOOD)
def test_put_with_matching_digest(server, uid, name, chunked):
    resp = put(server, uid, chunks(DATA) if chunked else DATA, GOOD[name])
    assert resp.status_code == 201, resp.text
    assert requests.get(server.id_url(uid), timeout=10).content == DATA


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("name", BAD)
def test_put_with_wrong_digest_stores_nothing(server, uid, name, chunked):
    headers, algorithm = BAD[name]
    resp = put(server, uid, chunks(DATA) if chunked else DATA, headers)
    body = assert_error(resp, 400, server.prefix)
    assert algorithm in body["message"] and "nothing was stored" in body["message"]
    assert_nothing_stored(server, uid)
    assert put(server, uid, DATA).status_code == 201  # the id is still free


@pytest.mark.parametrize("name", MALFORMED)
def test_put_with_malformed_digest_is_400(server, uid, name):
    resp = put(server, uid, DATA, MALFORMED[name])
    assert_error(resp, 400, server.prefix)
    assert_nothing_stored(server, uid)


def test_wrong_digest_over_raw_socket_large_body(server, uid):
    """A large body through the direct (C) receive: the digest is computed there."""
    data = os.urandom(4 * MiB + 3)
    resp = raw(
        "PUT",
        f"/{uid}",
        server.port,
        [f"Content-Length: {len(data)}", f"Content-Digest: sha-256=:{b64(sha256(data + b'!'))}:"],
        data,
    )
    assert resp.status == 400 and b"sha-256" in resp.body
    assert_nothing_stored(server, uid)
    good = raw(
        "PUT",
        f"/{uid}",
        server.port,
        [f"Content-Length: {len(data)}", f"Content-Digest: sha-256=:{b64(sha256(data))}:"],
        data,
    )
    assert good.status == 201, good


# ---- configuration -----------------------------------------------------------


def test_checksum_none_sends_no_digest_but_still_checks_clients(make_server, uid):
    srv = make_server("nosum", PAI_CHECKSUM="none")
    data = os.urandom(300_000)
    assert put(srv, uid, data).status_code == 201
    for resp in (requests.head(srv.id_url(uid), timeout=10), requests.get(srv.id_url(uid), timeout=10)):
        assert "Digest" not in resp.headers and "Repr-Digest" not in resp.headers
    wrong = put(srv, uid + "1", data, {"Content-MD5": b64(hashlib.md5(b"x").digest())})
    assert_error(wrong, 400)
    assert requests.head(srv.id_url(uid + "1"), timeout=10).status_code == 404


def test_checksum_sha512(make_server, uid):
    srv = make_server("sha512", PAI_CHECKSUM="sha512")
    data = os.urandom(2 * MiB + 1)
    assert put(srv, uid, data).status_code == 201
    digest = b64(hashlib.sha512(data).digest())
    head = requests.head(srv.id_url(uid), timeout=10)
    assert head.headers["Repr-Digest"] == f"sha-512=:{digest}:"
    assert head.headers["Digest"] == f"SHA-512={digest}"


# ---- where it is stored ---------------------------------------------------------


@XATTRS
def test_xattr_travels_with_the_file_and_is_not_an_id(server, uid):
    data = b"kept in an xattr"
    assert put(server, uid, data).status_code == 201
    path = server.stored_path(uid)
    md5, adler32 = hashlib.md5(data).hexdigest(), f"{zlib.adler32(data):08x}"
    stored = f"sha256:{sha256(data).hex()} md5:{md5} adler32:{adler32}"
    assert os.getxattr(path, "user.pyai.checksum") == stored.encode()
    assert not [p for p in server.prefix.rglob(".pyai-sum-*")]  # xattrs work here: no sidecar
    assert requests.delete(server.id_url(uid), timeout=10).status_code == 200
    assert not path.exists()


@XATTRS
def test_patch_moved_file_has_no_checksum(make_server, uid, tmp_path_factory):
    root = tmp_path_factory.mktemp("sumroot")
    srv = make_server("sumpatch", PAI_PATCH_ROOTS=str(root))
    src = root / f"in-{uid}"
    src.write_bytes(b"moved, never hashed here")
    os.setxattr(src, "user.pyai.checksum", f"sha256:{'00' * 32}".encode())  # a stale or forged one
    resp = requests.patch(srv.id_url(uid), data=json.dumps({"path": str(src)}), timeout=10)
    assert resp.status_code == 200, resp.text
    head = requests.head(srv.id_url(uid), timeout=10)
    assert head.status_code == 204 and "Digest" not in head.headers and "Repr-Digest" not in head.headers


@contextlib.contextmanager
def ramfs(path):
    """A file system without user xattrs (ramfs), mounted at ``path`` (root only)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a ramfs (a file system without user xattrs) needs root")
    done = subprocess.run(["mount", "-t", "ramfs", "pyai-test", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@XATTRS
def test_sidecar_where_xattrs_are_unsupported(fresh_server, uid, tmp_path):
    with ramfs(tmp_path / "ram") as prefix:
        srv = fresh_server.start("ramfs", PAI_PREFIX=str(prefix / "archive"))
        data = os.urandom(70_000)
        assert put(srv, uid, data).status_code == 201
        sidecar = srv.prefix / f".pyai-sum-{uid}"
        assert sidecar.read_text().split()[0] == f"sha256:{sha256(data).hex()}"
        assert_digest_headers(requests.head(srv.id_url(uid), timeout=10).headers, data)
        assert_digest_headers(requests.get(srv.id_url(uid), timeout=10).headers, data)
        # a digest computed on demand is kept in the sidecar too (rewritten whole, inode and size kept)
        sha512 = requests.head(srv.id_url(uid), headers={"Want-Digest": "sha-512"}, timeout=10)
        assert sha512.headers["Digest"] == f"SHA-512={b64(hashlib.sha512(data).digest())}"
        assert f"sha512:{hashlib.sha512(data).hexdigest()}" in sidecar.read_text().split()
        assert_digest_headers(requests.head(srv.id_url(uid), timeout=10).headers, data)
        # no id reaches it, whatever the encoding
        for target in (f"/.pyai-sum-{uid}", f"/%2Epyai-sum-{uid}"):
            assert raw("GET", target, srv.port).status == 400
            assert raw("DELETE", target, srv.port).status == 400
        assert sidecar.exists()
        # a second PUT to the id (409) leaves the sidecar alone
        assert put(srv, uid, b"other").status_code == 409
        assert_digest_headers(requests.head(srv.id_url(uid), timeout=10).headers, data)
        # a restart sweeps temporary files, not sidecars
        fresh_server.start("ramfs2", PAI_PREFIX=str(srv.prefix))
        assert sidecar.exists()
        # the verify command reads sidecars too
        env = service_env(tmp_path, PAI_BACKEND_TYPE="posix")
        rc, out, err = run_cli([CMD, "--prefix", str(srv.prefix), "verify", "--all"], env)
        assert rc == 0 and "1 ok" in out, (out, err)
        # a file moved to another id leaves no sidecar behind and gets no checksum
        other = uid + "-moved"
        resp = requests.patch(srv.id_url(other), data=json.dumps({"path": str(srv.stored_path(uid))}), timeout=10)
        assert resp.status_code == 200, resp.text
        assert not sidecar.exists() and not (srv.prefix / f".pyai-sum-{other}").exists()
        assert "Digest" not in requests.head(srv.id_url(other), timeout=10).headers
        # DELETE removes the sidecar with the file
        assert put(srv, uid, data).status_code == 201
        assert sidecar.exists()
        assert requests.delete(srv.id_url(uid), timeout=10).status_code == 200
        assert not sidecar.exists()
        longest = "L" * 255  # its sidecar's name is a hash: ".pyai-sum-" + 255 bytes is too long a name
        assert put(srv, longest, data).status_code == 201
        assert_digest_headers(requests.head(srv.id_url(longest), timeout=10).headers, data)
        assert requests.delete(srv.id_url(longest), timeout=10).status_code == 200
        assert sorted(p.name for p in srv.prefix.iterdir()) == [other]
        fresh_server.close()


# ---- verify --------------------------------------------------------------------


@XATTRS
def test_verify_finds_a_file_corrupted_behind_the_service(make_server, impl, tmp_path, uid):
    srv = make_server("verify")
    good, bad = uid + "-good", uid + "-bad"
    assert put(srv, good, os.urandom(3 * MiB)).status_code == 201
    assert put(srv, bad, os.urandom(300_000)).status_code == 201
    srv.stored_path(uid + "-old").write_bytes(b"no checksum")
    env = service_env(tmp_path, PYAI_IMPL=impl, PAI_BACKEND_TYPE="posix")
    cmd = [CMD, "--prefix", str(srv.prefix), "verify"]
    rc, out, err = run_cli(cmd + ["--all"], env)
    assert rc == 0, (out, err)
    assert f"NO CHECKSUM {srv.stored_path(uid + '-old')}" in out and "MISMATCH" not in out
    path = srv.stored_path(bad)
    corrupt(path, 123_456)
    rc, out, err = run_cli(cmd + ["--all"], env)
    assert rc != 0, (out, err)
    assert f"MISMATCH {path}" in out and "MISMATCH" not in out.replace(f"MISMATCH {path}", "")
    assert "verified" in err  # progress (plain lines: stderr is not a terminal here)
    rc, out, err = run_cli(cmd + [good], env)
    assert rc == 0 and "1 ok" in out, (out, err)
    rc, out, err = run_cli(cmd + [good, bad], env)
    assert rc != 0 and f"MISMATCH {bad}" in out, (out, err)
    rc, out, err = run_cli(cmd, env)
    assert rc == 2 and "ids or --all" in err


def test_verify_on_hpss_checks_the_attributes(server, backend, tmp_path, uid):
    if backend != "hpss":
        pytest.skip("hpss only: the posix backend is verified above")
    assert put(server, uid, b"on the emulator").status_code == 201
    behind = server.stored_path(uid + "1")
    behind.parent.mkdir(parents=True, exist_ok=True)
    behind.write_bytes(b"stored behind the service: no attributes")
    env = service_env(tmp_path, PAI_BACKEND_TYPE="hpss", PAI_USE_ID2FILENAME="true")
    rc, out, err = run_cli([CMD, "--prefix", str(server.prefix), "verify", uid, uid + "1"], env)
    assert rc == 0 and "1 ok" in out, (out, err)
    assert f"NO CHECKSUM {uid}1" in out and "MISMATCH" not in out
    assert ".pyai" not in out and ".hpss-emu" not in out
