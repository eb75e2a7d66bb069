"""Digests on HPSS over HTTP: stored ones answer for a file on tape, missing ones are never a
reason to stage it (computed once it is on disk), and what the Globus connector's keys hold."""

import hashlib
import zlib

import requests
from emulator import emu_cli, logged_in

from .test_tape import new_id


def want(srv, ident, value):
    return requests.head(srv.id_url(ident), headers={"Want-Digest": value}, timeout=30)


def media(srv, ident):
    return requests.head(srv.id_url(ident), timeout=30).headers["X-Pacifica-File-Storage-Media"]


def test_a_missing_digest_never_stages_a_tape_file(hpss_pool):
    srv = hpss_pool.start("nosum", PAI_CHECKSUM="none", PAI_HPSS_PING_INTERVAL="0")
    emu_cli(srv.prefix, "set-stage-delay", "0.2")
    ident, data = new_id(), b"on tape, never hashed" * 1000
    assert requests.put(srv.id_url(ident), data=data, timeout=30).status_code == 201
    emu_cli(srv.prefix, "purge", ident)
    assert media(srv, ident) == "tape"
    resp = want(srv, ident, "adler32")
    assert resp.status_code == 204 and "Digest" not in resp.headers
    assert media(srv, ident) == "tape"  # not staged for it
    emu_cli(srv.prefix, "stage", "--wait", ident)
    assert media(srv, ident) == "disk"
    assert want(srv, ident, "adler32").headers["Digest"] == f"ADLER32={zlib.adler32(data):08x}"


def test_stored_digests_answer_for_a_tape_file_and_the_globus_keys_are_written(hpss_pool):
    srv = hpss_pool.start("withsum", PAI_HPSS_PING_INTERVAL="0")
    ident, data = new_id(), b"kept in user-defined attributes" * 999
    assert requests.put(srv.id_url(ident), data=data, timeout=30).status_code == 201
    emu_cli(srv.prefix, "purge", ident)
    assert want(srv, ident, "adler32").headers["Digest"] == f"ADLER32={zlib.adler32(data):08x}"
    assert media(srv, ident) == "tape"
    # the connector's layout, read as another HPSS tool would (the emulator's record of the file)
    keys = [f"/hpss/user/cksum/{k}" for k in ("algorithm", "checksum", "state", "app", "filesize", "errors")]
    with logged_in(srv.prefix) as hpss:
        got = hpss.get_user_attrs(str(srv.stored_path(ident)), keys)
    assert got == {
        "/hpss/user/cksum/algorithm": "md5",
        "/hpss/user/cksum/checksum": hashlib.md5(data).hexdigest(),
        "/hpss/user/cksum/state": "Valid",
        "/hpss/user/cksum/app": "pyai",
        "/hpss/user/cksum/filesize": str(len(data)),
        "/hpss/user/cksum/errors": "0",
    }
