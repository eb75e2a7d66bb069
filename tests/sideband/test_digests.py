"""Several digests on the hsmsideband backend: kept as on posix, negotiated on HEAD/GET, and computed
on demand only for a file the database says is online (a file on tape is never recalled for one)."""

import base64
import hashlib
import os
import subprocess
import sys
import zlib
from pathlib import Path

import requests
from server import corrupt, service_env

from .test_http import new_id, put

CMD = str(Path(sys.executable).parent / "pacifica-archiveinterface-cmd")


def run_cli(args, env):
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def want(srv, ident, value):
    return requests.head(srv.id_url(ident), headers={"Want-Digest": value}, timeout=30)


def stored(path):
    try:
        return os.getxattr(path, "user.pyai.checksum").decode()
    except OSError:
        return ""


def test_put_keeps_three_and_want_digest_gets_each(sideband, samdb):
    ident, data = new_id(), os.urandom(300_000)
    path = put(sideband, ident, data)
    samdb.record(path, online=False)  # on tape: stored digests are still answered (no read needed)
    assert stored(path).split() == [
        f"sha256:{hashlib.sha256(data).hexdigest()}",
        f"md5:{hashlib.md5(data).hexdigest()}",
        f"adler32:{zlib.adler32(data):08x}",
    ]
    assert want(sideband, ident, "adler32").headers["Digest"] == f"ADLER32={zlib.adler32(data):08x}"
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    assert want(sideband, ident, "MD5").headers["Digest"] == f"MD5={md5}"
    get = requests.get(sideband.id_url(ident), headers={"Want-Repr-Digest": "md5=2"}, timeout=30)
    assert get.content == data and get.headers["Repr-Digest"] == f"md5=:{md5}:"


def test_a_missing_digest_is_computed_online_and_never_for_a_file_on_tape(sideband_pool, samdb):
    srv = sideband_pool.start("nosum", PAI_CHECKSUM="none")
    on_tape, online = new_id(), new_id()
    data = os.urandom(200_000)
    tape_path, disk_path = put(srv, on_tape, data), put(srv, online, data)
    samdb.record(tape_path, online=False)
    samdb.record(disk_path, online=True)
    resp = want(srv, on_tape, "adler32")
    assert resp.status_code == 204 and "Digest" not in resp.headers
    assert stored(tape_path) == ""  # nothing was read to compute it
    resp = want(srv, online, "adler32")
    assert resp.headers["Digest"] == f"ADLER32={zlib.adler32(data):08x}"
    assert stored(disk_path) == f"adler32:{zlib.adler32(data):08x}"


def test_verify_compares_every_digest_on_hsmsideband(sideband_pool, samdb, mariadb, tmp_path):
    srv = sideband_pool.start("verify")
    ident, data = new_id(), os.urandom(150_000)
    path = put(srv, ident, data)
    samdb.record(path, online=True)
    env = service_env(
        tmp_path,
        PAI_BACKEND_TYPE="hsmsideband",
        PAI_SAM_QFS_PREFIX=str(srv.prefix),
        PAI_USE_ID2FILENAME="true",
        **mariadb.settings(),
    )
    cmd = [CMD, "--prefix", str(srv.prefix), "verify", ident]
    rc, out, err = run_cli(cmd, env)
    assert rc == 0 and "1 ok" in out, (out, err)
    corrupt(path, 99, 0x04)
    rc, out, err = run_cli(cmd, env)
    assert rc == 1 and "the stored sha256, md5, adler32 checksum" in out, (out, err)
