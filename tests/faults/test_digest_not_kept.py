"""A digest computed on demand that cannot be kept with the file is not computed again.

A client may ask (Want-Digest, Want-Repr-Digest) for a digest the archive does
not store; it is computed from the stored bytes and kept (an xattr, HPSS's
user-defined attributes).  Here the prefix is a file system remounted
read-only, so keeping it fails (as it does for a file the service does not
own, an xattr space that is full, or a failed HPSS attribute write): the
first ask reads the whole file, a repeated ask is answered from the worker's
memory and reads none of it.  The reads are counted by the kernel
(/proc/<worker>/io, rchar: every byte the worker's read calls returned).
"""

import base64
import hashlib
import os

import pytest
import requests

from .checks import store
from .mounts import remount, tmpfs
from .procs import workers

SIZE = 8 << 20


def read_chars(pid):
    with open(f"/proc/{pid}/io") as handle:
        return int(next(line for line in handle if line.startswith("rchar:")).split()[1])


@pytest.mark.posix_only("the HPSS emulator keeps its namespace under the prefix and cannot stat a read-only one")
def test_a_digest_that_cannot_be_kept_is_read_once(tmp_path, start, new_id):
    with tmpfs(tmp_path / "ro", "32m") as prefix:
        srv = start("unkept", PAI_PREFIX=str(prefix), PAI_WORKERS="1")  # one worker: one memory
        try:
            ident, data = new_id(), os.urandom(SIZE)
            store(srv, ident, data)  # keeps sha256, adler32 and md5, not sha512
            (worker,) = workers(srv, 1)
            remount(prefix, "ro")
            expected = "SHA-512=" + base64.b64encode(hashlib.sha512(data).digest()).decode()
            read = []
            for _ in range(3):
                before = read_chars(worker)
                resp = requests.head(srv.id_url(ident), headers={"Want-Digest": "SHA-512"}, timeout=60)
                read.append(read_chars(worker) - before)
                assert resp.status_code == 204 and resp.headers.get("Digest") == expected, resp.headers
            assert read[0] >= SIZE, f"the first ask read {read[0]} bytes: the count sees no read of the file"
            assert read[1] < SIZE // 8 and read[2] < SIZE // 8, f"bytes read by the asks: {read}"
            assert srv.log().count("could not keep the digests computed from") == 1, srv.log()
            assert workers(srv, 1) == [worker]  # one process answered all three
        finally:
            srv.stop()
