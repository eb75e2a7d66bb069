"""gfal-copy between two pyai servers in each third-party mode, as FTS runs it: davix sends the
COPY, the active server moves the bytes, gfal2 reads the markers and compares the checksums."""

import os
import zlib

import pytest
import requests


def put(srv, ident, data):
    assert requests.put(srv.id_url(ident), data=data, timeout=60).status_code == 201


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_gfal_copies_third_party(tpc_pair, uid, gfal, mode):
    a, b = tpc_pair
    data = os.urandom(5_000_000)
    put(a, uid, data)
    # ?copy_mode= forces the mode: no fallback to the next one, nor to streaming through the client
    proc = gfal.run("gfal-copy", "-v", "-K", "ADLER32", a.id_url(uid), f"{b.id_url(uid)}?copy_mode={mode}")
    assert f"TRANSFER:TYPE\t3rd {mode}" in proc.stdout, proc.stdout
    assert "streamed" not in proc.stdout
    assert b.stored_path(uid).read_bytes() == data
    summed = gfal.run("gfal-sum", b.id_url(uid), "ADLER32").stdout.split()
    assert summed[-1] == f"{zlib.adler32(data):08x}"
