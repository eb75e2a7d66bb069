"""A COPY whose remote misbehaves or whose client leaves: a source that vanishes half way, a
digest that does not match, one that is required and absent, redirects (credentials stay with
their host), a slow source (markers while it runs), and a client that hangs up (the copy stops).
Each keeps nothing under the id and no temporary file."""

import os
import socket
import time
import zlib

import pytest
import requests
from server import wait_until

from tpc.conftest import trickle
from tpc.test_copy_raw import check_stream, copy


def nothing_kept(srv, int_id):
    assert not srv.stored_path(int_id).exists()
    assert wait_until(lambda: not srv.temp_files(), timeout=10), srv.temp_files()


def answer(status, body=b"", **headers):
    def handle(h):
        h.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            h.send_header(name, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    return handle


def test_a_source_that_vanishes_half_way_fails_and_keeps_nothing(tpc_server, remote, int_id):
    remote.handle = trickle(os.urandom(4_000_000), pieces=8, pause=0.05, stop_after=4)
    last = check_stream(copy(tpc_server, int_id, Source=remote.url + "/f"))
    assert last.startswith("failure: ") and "2000000 of 4000000" in last, last
    nothing_kept(tpc_server, int_id)


@pytest.mark.parametrize("status", [404, 403])
def test_a_source_that_refuses_is_told_before_the_copy(tpc_server, remote, int_id, status):
    remote.handle = answer(status)
    resp = copy(tpc_server, int_id, Source=remote.url + "/f")
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    nothing_kept(tpc_server, int_id)


def test_a_digest_mismatch_fails_and_keeps_nothing(tpc_server, remote, int_id):
    data = b"the bytes the source sends"
    remote.handle = answer(200, data, Digest=f"adler32={zlib.adler32(data) ^ 1:08x}")
    last = check_stream(copy(tpc_server, int_id, Source=remote.url + "/f"))
    assert last.startswith("failure: ") and "digest" in last, last
    nothing_kept(tpc_server, int_id)


def test_a_matching_digest_is_checked_and_kept(tpc_server, remote, int_id):
    data = b"the bytes the source sends, right"
    remote.handle = answer(200, data, Digest=f"adler32={zlib.adler32(data):08x}")
    last = check_stream(copy(tpc_server, int_id, Source=remote.url + "/f", RequireChecksumVerification="true"))
    assert last == "success: Created"
    assert ("HEAD", "/f") in [(m, p) for m, p, _ in remote.seen]
    assert all(h.get("Want-Digest") == "adler32" for _, _, h in remote.seen)
    assert tpc_server.stored_path(int_id).read_bytes() == data


def test_a_required_digest_the_source_does_not_offer_fails(tpc_server, remote, int_id):
    remote.handle = answer(200, b"no digest offered")
    last = check_stream(copy(tpc_server, int_id, Source=remote.url + "/f", RequireChecksumVerification="true"))
    assert last.startswith("failure: ") and "digest" in last, last
    nothing_kept(tpc_server, int_id)


def test_transfer_headers_are_forwarded_and_credentials_stay_with_their_host(tpc_server, remote, int_id):
    """The source redirects to another server (another port: another origin): the token the
    client forwarded for the source goes to the source only; the other forwarded fields follow."""
    data = b"redirected bytes"
    second = type(remote)()
    try:
        second.handle = answer(200, data)
        remote.handle = answer(302, Location=second.url + "/there")
        headers = {
            "Source": remote.url + "/f",
            "TransferHeaderAuthorization": "Bearer for-the-source",
            "TransferHeaderX-Custom": "kept",
        }
        resp = requests.request("COPY", tpc_server.id_url(int_id), headers=headers, timeout=60)
        assert check_stream(resp) == "success: Created"
        assert tpc_server.stored_path(int_id).read_bytes() == data
        assert {h.get("Authorization") for _, _, h in remote.seen} == {"Bearer for-the-source"}
        assert [h.get("Authorization") for _, _, h in second.seen] == [None, None]  # HEAD, GET
        assert {h.get("X-Custom") for _, _, h in remote.seen + second.seen} == {"kept"}
    finally:
        second.close()


def test_a_redirect_outside_the_list_fails_without_reaching_it(tpc_server, remote, int_id):
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("cannot listen on 127.0.0.2")
    listener.listen(8)
    listener.setblocking(False)
    remote.handle = answer(307, Location=f"http://127.0.0.2:{listener.getsockname()[1]}/elsewhere")
    try:
        resp = copy(tpc_server, int_id, Source=remote.url + "/f")
        assert resp.status_code == 403, resp.text
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    nothing_kept(tpc_server, int_id)


def test_a_slow_copy_sends_markers_while_it_runs(tpc_server, remote, int_id):
    """Over 5 s: a marker at once, another within 5 s, their byte counts growing."""
    data = os.urandom(700_000)
    remote.handle = trickle(data, pieces=7, pause=1.0)
    started = time.monotonic()
    source = {"Source": remote.url + "/f"}
    with requests.request("COPY", tpc_server.id_url(int_id), headers=source, stream=True, timeout=60) as resp:
        lines, arrivals = [], []
        for line in resp.iter_lines():
            lines.append(line.decode())
            if line == b"End":
                arrivals.append(time.monotonic() - started)
    counts = [int(line.split(": ")[1]) for line in lines if line.startswith("Stripe Bytes Transferred")]
    assert lines[-1] == "success: Created"
    assert len(counts) >= 2 and counts == sorted(counts) and counts[-1] > 0, counts
    assert all(line.startswith("RemoteConnections: tcp:127.0.0.1:") for line in lines if "Remote" in line)
    assert arrivals[0] < 2 and all(b - a < 6 for a, b in zip(arrivals, arrivals[1:])), arrivals
    assert tpc_server.stored_path(int_id).read_bytes() == data


def test_a_client_that_hangs_up_cancels_the_copy(tpc_server, remote, int_id):
    remote.handle = trickle(os.urandom(3_000_000), pieces=60, pause=0.5)
    with socket.create_connection(("127.0.0.1", tpc_server.port)) as client:
        client.sendall(f"COPY /{int_id} HTTP/1.1\r\nHost: x\r\nSource: {remote.url}/f\r\n\r\n".encode())
        assert client.recv(4096).startswith(b"HTTP/1.1 202")
        assert wait_until(lambda: tpc_server.temp_files(), timeout=10)  # the copy is under way
    # the source sees its connection shut once pyai notices (within a second or two)
    assert remote.closed.wait(10), "the copy went on after its client left"
    nothing_kept(tpc_server, int_id)


def test_a_source_that_trickles_below_the_rate_floor_fails(server_pool, request, remote, int_id):
    """A remote that keeps sending, too slowly, does not hold a copy slot for ever: once
    [tpc] timeout has passed it must average [archive] min_body_rate, as an upload must."""
    srv = server_pool(request).start(
        "tpc-floor", PAI_TPC_REMOTES="127.0.0.1", PAI_TPC_TIMEOUT="1", PAI_MIN_BODY_RATE="100K"
    )
    remote.handle = trickle(os.urandom(40_000), pieces=40, pause=0.2)
    started = time.monotonic()
    last = check_stream(copy(srv, int_id, Source=remote.url + "/f"))
    assert last.startswith("failure: "), last
    assert time.monotonic() - started < 6  # not the 8 s the source would take
    nothing_kept(srv, int_id)
