"""COPY as FTS and davix send it, over raw HTTP: the marker stream checked line by line, a pull
and a push between two pyai servers, the checks made before anything moves."""

import os
import re
import zlib

import pytest
import requests

LINE = re.compile(
    r"Perf Marker|Timestamp: \d+|Stripe Index: 0|Stripe Bytes Transferred: \d+|Total Stripe Count: 1"
    r"|RemoteConnections: tcp:(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+|End"
)


def put(srv, ident, data):
    resp = requests.put(srv.id_url(ident), data=data, timeout=60)
    assert resp.status_code == 201, resp.text


def copy(srv, ident, **headers):
    return requests.request("COPY", srv.id_url(ident), headers=headers, timeout=120)


def check_stream(resp):
    """The answer of an accepted COPY, line by line against davix's grammar: its last line."""
    assert resp.status_code == 202, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    lines = resp.text.split("\n")
    assert lines[-1] == "", "the answer ends with a line end"
    lines = lines[:-1]
    *markers, last = lines
    assert markers[:1] == ["Perf Marker"], "a marker comes first: the client knows the copy began"
    in_marker = False
    for line in markers:
        assert len(line) < 1024
        assert LINE.fullmatch(line), line
        if line == "Perf Marker":
            assert not in_marker
            in_marker = True
        elif line == "End":
            assert in_marker
            in_marker = False
        else:
            assert in_marker, line
    assert not in_marker
    assert not last.startswith("End") and len(last) < 1024
    return last


@pytest.mark.quick
def test_pull_between_two_servers(tpc_pair, uid):
    a, b = tpc_pair
    data = os.urandom(3_000_000)
    put(a, uid, data)
    resp = copy(b, uid, Source=a.id_url(uid), **{"X-Number-Of-Streams": "1", "Credential": "none"})
    assert check_stream(resp) == "success: Created"
    assert b.stored_path(uid).read_bytes() == data
    head = requests.head(b.id_url(uid), headers={"Want-Digest": "adler32"}, timeout=10)
    assert head.headers["Digest"].lower() == f"adler32={zlib.adler32(data):08x}"


@pytest.mark.quick
def test_push_between_two_servers(tpc_pair, uid):
    a, b = tpc_pair
    data = os.urandom(2_000_000)
    put(a, uid, data)
    resp = copy(a, uid, Destination=b.id_url(uid))
    assert check_stream(resp) == "success: Created"
    assert b.stored_path(uid).read_bytes() == data
