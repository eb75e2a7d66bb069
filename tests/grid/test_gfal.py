"""gfal2 (the grid's file access library, over davix) against pyai: what FTS, Rucio and a
physicist's shell do with an archive.  Plain http:// URLs: davix stats them with
PROPFIND (Depth 0) first and falls back to HEAD; checksums come from HEAD with
Want-Digest; locality, bring-online and evict go through the WLCG Tape REST API
found at /.well-known/wlcg-tape-rest-api.
"""

import hashlib
import os
import re
import secrets
import zlib

import pytest
import requests
from emulator import emu_cli, stages
from server import wait_until

LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"
LAST_MODIFIED_STAT = "1994-11-06 08:49:37"  # as gfal-stat prints it (TZ=UTC)


def put(srv, ident, data, **headers):
    resp = requests.put(srv.id_url(ident), data=data, headers=headers, timeout=60)
    assert resp.status_code == 201, resp.text
    return resp


def on_tape(tape, data):
    """A fresh id on the tape archive whose file (``data``) is on tape only."""
    ident = str(secrets.randbits(40) | (1 << 41))
    put(tape, ident, data)
    emu_cli(tape.prefix, "purge", ident)
    return ident


def media(srv, ident):
    return requests.head(srv.id_url(ident), timeout=10).headers["X-Pacifica-File-Storage-Media"]


@pytest.fixture
def payload():
    return os.urandom(300_000) + b"end"


@pytest.mark.quick
def test_gfal_copy_in_and_out(server, uid, payload, gfal, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    gfal.run("gfal-copy", f"file://{src}", server.id_url(uid))
    assert server.stored_path(uid).read_bytes() == payload
    out = tmp_path / "out.bin"
    gfal.run("gfal-copy", server.id_url(uid), f"file://{out}")
    assert out.read_bytes() == payload


def test_gfal_copy_between_ids_streamed(server, uid, int_id, payload, gfal):
    """http -> http, streamed through the client when told to."""
    put(server, uid, payload)
    gfal.run("gfal-copy", "--copy-mode", "streamed", server.id_url(uid), server.id_url(int_id))
    assert requests.get(server.id_url(int_id), timeout=30).content == payload


def test_gfal_copy_between_ids_falls_back_to_streaming(server, uid, int_id, payload, gfal):
    """A plain gfal-copy tries a third-party pull, then a push (HTTP COPY), then streams through the
    client.  With ``[tpc] remotes`` empty (the default) pyai does no third-party copy: COPY is 501,
    on which davix falls back (a 403 or 405 would stop it with "Permission refused")."""
    put(server, uid, payload)
    gfal.run("gfal-copy", server.id_url(uid), server.id_url(int_id))
    assert requests.get(server.id_url(int_id), timeout=30).content == payload
    refused = requests.request("COPY", server.id_url(uid), headers={"Destination": server.id_url("x")}, timeout=30)
    assert refused.status_code == 501
    assert refused.headers["Content-Type"] == "application/json"


def test_gfal_copy_refuses_to_overwrite(server, uid, payload, gfal, tmp_path):
    """gfal-copy without -f stats the target first and leaves a stored file alone."""
    put(server, uid, payload)
    src = tmp_path / "other.bin"
    src.write_bytes(b"other bytes")
    proc = gfal.run("gfal-copy", f"file://{src}", server.id_url(uid), check=False)
    assert proc.returncode != 0
    assert "exists" in (proc.stdout + proc.stderr).lower(), proc.stderr
    assert server.stored_path(uid).read_bytes() == payload


def test_gfal_stat(server, uid, payload, gfal):
    put(server, uid, payload, **{"Last-Modified": LAST_MODIFIED})
    out = gfal.run("gfal-stat", server.id_url(uid)).stdout
    assert re.search(rf"Size: {len(payload)}\s+regular file", out), out
    assert f"Modify: {LAST_MODIFIED_STAT}" in out, out


def test_gfal_stat_of_a_missing_id(server, uid, gfal):
    proc = gfal.run("gfal-stat", server.id_url(uid), check=False)
    assert proc.returncode != 0
    assert "not found" in proc.stderr.lower() or "no such file" in proc.stderr.lower(), proc.stderr


def test_gfal_stat_over_dav_scheme(server, uid, payload, gfal):
    """dav:// makes davix use WebDAV only (no HEAD fallback): PROPFIND alone must answer."""
    put(server, uid, payload, **{"Last-Modified": LAST_MODIFIED})
    out = gfal.run("gfal-stat", server.id_url(uid).replace("http://", "dav://", 1)).stdout
    assert re.search(rf"Size: {len(payload)}\s+regular file", out), out
    assert f"Modify: {LAST_MODIFIED_STAT}" in out, out


def test_gfal_sum_adler32(server, uid, payload, gfal):
    put(server, uid, payload)
    out = gfal.run("gfal-sum", server.id_url(uid), "ADLER32").stdout.split()
    assert out == [server.id_url(uid), f"{zlib.adler32(payload):08x}"]


def test_gfal_sum_md5(server, uid, payload, gfal):
    put(server, uid, payload)
    out = gfal.run("gfal-sum", server.id_url(uid), "MD5").stdout.split()
    assert out == [server.id_url(uid), hashlib.md5(payload).hexdigest()]


def test_gfal_copy_verifies_adler32(server, uid, payload, gfal, tmp_path):
    """-K ADLER32: gfal2 hashes the source itself, then asks the archive (HEAD, Want-Digest)."""
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    gfal.run("gfal-copy", "-K", "ADLER32", f"file://{src}", server.id_url(uid))
    assert requests.get(server.id_url(uid), timeout=30).content == payload


def test_gfal_copy_with_a_given_md5(server, uid, payload, gfal, tmp_path):
    """-K MD5:<hex>: gfal2 sends the digest as ``Content-MD5: <32 hex digits>`` (not RFC
    1864's base64) with the PUT, then compares it with the archive's (HEAD, Want-Digest)."""
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    gfal.run("gfal-copy", "-K", f"MD5:{hashlib.md5(payload).hexdigest()}", f"file://{src}", server.id_url(uid))
    assert requests.get(server.id_url(uid), timeout=30).content == payload


def test_gfal_copy_with_a_wrong_md5_stores_nothing(server, uid, payload, gfal, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    proc = gfal.run("gfal-copy", "-K", f"MD5:{'0' * 32}", f"file://{src}", server.id_url(uid), check=False)
    assert proc.returncode != 0
    assert requests.head(server.id_url(uid), timeout=10).status_code == 404


def test_gfal_xattr_status_online(server, uid, payload, gfal):
    put(server, uid, payload)
    out = gfal.run("gfal-xattr", server.id_url(uid), "user.status").stdout.strip()
    assert out == "ONLINE"


def test_gfal_xattr_status_nearline(tape, payload, gfal):
    ident = on_tape(tape, payload)
    out = gfal.run("gfal-xattr", tape.id_url(ident), "user.status").stdout.strip()
    assert out == "NEARLINE"
    assert stages(tape, ident) == 0, "asking for the locality staged the file"
    assert media(tape, ident) == "tape"


def test_gfal_stat_of_a_tape_file_does_not_stage(tape, payload, gfal):
    ident = on_tape(tape, payload)
    out = gfal.run("gfal-stat", tape.id_url(ident)).stdout
    assert re.search(rf"Size: {len(payload)}\s+regular file", out), out
    assert stages(tape, ident) == 0, "stat staged the file"
    assert media(tape, ident) == "tape"


def test_gfal_bringonline(tape, payload, gfal):
    ident = on_tape(tape, payload)
    assert media(tape, ident) == "tape"
    # gfal-bringonline exits 0 whatever happens: what it printed says how it went
    out = gfal.run("gfal-bringonline", "--polling-timeout", "60", tape.id_url(ident)).stdout
    assert f"{tape.id_url(ident)} READY" in out, out
    assert "FAILED" not in out, out
    assert media(tape, ident) == "disk"
    got = requests.get(tape.id_url(ident), timeout=30)
    assert got.status_code == 200 and got.content == payload


def test_gfal_evict(tape, payload, gfal):
    ident = on_tape(tape, payload)
    gfal.run("gfal-bringonline", "--polling-timeout", "60", tape.id_url(ident))
    assert wait_until(lambda: media(tape, ident) == "disk", timeout=30)
    # without a request id gfal2 releases under a placeholder id: the server must take it,
    # and with no other pin on the file its disk copy goes (the file never does)
    gfal.run("gfal-evict", tape.id_url(ident))
    assert media(tape, ident) == "tape"
    got = requests.get(tape.id_url(ident), timeout=30)
    assert got.status_code == 200 and got.content == payload
