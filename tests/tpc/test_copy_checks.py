"""What a COPY is refused for before anything moves: its header fields, the target's state, the
remotes the archive may reach (no connection is made to another), and the copy slots."""

import socket

import pytest
import requests

from tpc.conftest import TPC, trickle
from tpc.test_copy_raw import check_stream, copy, put


def refused(resp, status):
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    return resp.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Source": "http://127.0.0.1:1/x", "Destination": "http://127.0.0.1:1/y"},
        {"Source": "ftp://127.0.0.1/x"},
        {"Source": "http://user:pw@127.0.0.1:1/x"},
        {"Source": "http://127.0.0.1:99999/x"},
        {"Source": "http://127.0.0.1:1/x", "Credential": "gridsite"},
        {"Source": "http://127.0.0.1:1/x", "Credential": "none, gridsite"},
        {"Source": "http://127.0.0.1:1/x", "Overwrite": "maybe"},
        {"Source": "http://127.0.0.1:1/x", "RequireChecksumVerification": "yes"},
        {"Source": "http://127.0.0.1:1/x", "X-Number-Of-Streams": "101"},
        {"Source": "http://127.0.0.1:1/x", "X-Number-Of-Streams": "-1"},
    ],
)
def test_bad_header_fields_are_400(tpc_server, int_id, headers):
    refused(copy(tpc_server, int_id, **headers), 400)
    assert not tpc_server.stored_path(int_id).exists()


def test_ignored_fields_and_query_are_tolerated(tpc_pair, int_id):
    a, b = tpc_pair
    put(a, int_id, b"tolerated")
    headers = {"Secure-Redirection": "1", "ClientInfo": "job-id=1", "SciTag": "65", "ArchiveMetadata": "x"}
    headers["Source"] = a.id_url(int_id)
    resp = requests.request("COPY", b.id_url(int_id) + "?copy_mode=pull", headers=headers, timeout=60)
    assert check_stream(resp) == "success: Created"


def test_a_taken_id_is_409_and_overwrite_false_412(tpc_pair, int_id):
    a, b = tpc_pair
    put(a, int_id, b"new")
    put(b, int_id, b"old")
    assert "write-once" in refused(copy(b, int_id, Source=a.id_url(int_id)), 409)
    assert "Overwrite" in refused(copy(b, int_id, Source=a.id_url(int_id), Overwrite="F"), 412)
    assert b.stored_path(int_id).read_bytes() == b"old"


def test_pushing_a_missing_id_is_404(tpc_server, int_id):
    refused(copy(tpc_server, int_id, Destination="http://127.0.0.1:1/x"), 404)


def test_a_body_is_400(tpc_server, int_id):
    resp = requests.request("COPY", tpc_server.id_url(int_id), headers={"Source": "http://127.0.0.1:1/x"}, data=b"x")
    refused(resp, 400)


def test_options_lists_copy(tpc_server, int_id):
    allow = requests.options(tpc_server.id_url(int_id), timeout=10).headers["Allow"]
    assert "COPY" in allow.split(", ")


@pytest.mark.parametrize("host", ["127.0.0.2", "[::1]", "[::ffff:127.0.0.2]", "0.0.0.0", "pyai-unknown.invalid"])
def test_a_remote_outside_the_list_is_403_and_never_reached(tpc_server, int_id, host):
    """Only 127.0.0.1 is listed: another loopback address (written as IPv4, IPv6 or IPv4-mapped),
    0.0.0.0 (this host), or a name that does not resolve are refused before any connection."""
    listener = socket.socket(socket.AF_INET6 if host == "[::1]" else socket.AF_INET)
    bind = {"[::1]": "::1", "0.0.0.0": "127.0.0.1"}.get(host, "127.0.0.2")
    try:
        listener.bind((bind, 0))
    except OSError:
        pytest.skip(f"cannot listen on {bind}")
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        message = refused(copy(tpc_server, int_id, Source=f"http://{host}:{port}/x"), 403)
        assert "[tpc] remotes" in message or "does not resolve" in message
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing connected
    finally:
        listener.close()
    assert not tpc_server.stored_path(int_id).exists()


def test_copies_past_max_copies_are_503(server_pool, request, remote, int_id):
    """One worker, one copy slot: a second COPY while a slow one runs is told to come back."""
    srv = server_pool(request).start("tpc-1", PAI_WORKERS="1", PAI_TPC_MAX_COPIES="1", **TPC)
    remote.handle = trickle(b"x" * 30, pieces=3, pause=1.0)
    with requests.request("COPY", srv.id_url(int_id), headers={"Source": remote.url + "/a"}, stream=True) as slow:
        assert slow.status_code == 202
        busy = copy(srv, str(int(int_id) + 1), Source=remote.url + "/b")
        refused(busy, 503)
        assert int(busy.headers["Retry-After"]) > 0
        assert slow.text.rstrip("\n").split("\n")[-1] == "success: Created"
    assert srv.stored_path(int_id).read_bytes() == b"x" * 30
