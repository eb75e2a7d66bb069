"""HTTP/2 with prior knowledge gets its answer in HTTP/2: the server preface and a GOAWAY
with HTTP_1_1_REQUIRED (RFC 9113), not an HTTP/1.1 400 that an h2 client cannot read.

The worker reads every head the same way whatever the backend: one posix server.
"""

import json
import shutil
import socket
import struct
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from server import raw, recv_all, wait_until

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CLIENT_SETTINGS = bytes.fromhex("000000 04 00 00000000")  # length, type SETTINGS, flags, stream 0: empty
SETTINGS, GOAWAY, HTTP_1_1_REQUIRED = 0x4, 0x7, 0xD


@pytest.fixture(scope="module")
def h2server(server_pool, request, tmp_path_factory):
    log = tmp_path_factory.mktemp("http2") / "transfer.log"
    srv = server_pool(request).start("http2", PAI_TRANSFER_LOG=str(log))
    srv.transfer_log = log
    return srv


def frames(data):
    """[(type, flags, stream id, payload)] of a byte string that must be whole HTTP/2 frames."""
    found = []
    while data:
        assert len(data) >= 9, f"not a frame header: {data!r}"
        length = int.from_bytes(data[:3], "big")
        kind, flags, stream = struct.unpack(">BBI", data[3:9])
        assert len(data) >= 9 + length, f"a frame cut short: {data!r}"
        found.append((kind, flags, stream & 0x7FFFFFFF, data[9 : 9 + length]))
        data = data[9 + length :]
    return found


def answer_to(port, *pieces):
    """All the server sends, until it closes, to a connection opening with ``pieces``."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            sock.sendall(piece)
        return recv_all(sock)


def assert_goaway(data):
    """The server preface (an empty SETTINGS), then GOAWAY(last stream 0, HTTP_1_1_REQUIRED), and nothing else."""
    assert not data.startswith(b"HTTP/"), data[:200]
    (settings, goaway) = frames(data)
    assert settings == (SETTINGS, 0, 0, b"")
    kind, flags, stream, payload = goaway
    assert (kind, flags, stream) == (GOAWAY, 0, 0)
    last_stream, error = struct.unpack(">II", payload[:8])
    assert (last_stream & 0x7FFFFFFF, error) == (0, HTTP_1_1_REQUIRED)
    assert payload[8:] == b"pyai speaks HTTP/1.1"


@pytest.mark.skipif(
    not shutil.which("curl") or "HTTP2" not in subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout,
    reason="curl with HTTP/2 is required",
)
def test_curl_with_prior_knowledge_is_told_http11_is_required(h2server):
    proc = subprocess.run(
        ["curl", "-sS", "-v", "--http2-prior-knowledge", h2server.url + "/"], capture_output=True, text=True, timeout=30
    )
    assert "Empty reply from server" not in proc.stderr
    assert proc.returncode == 16, proc.stderr  # CURLE_HTTP2: an error in the HTTP/2 layer, not 52 (empty reply)
    assert "GOAWAY" in proc.stderr and ("error=13" in proc.stderr or "HTTP_1_1_REQUIRED" in proc.stderr), proc.stderr


def test_the_preface_gets_settings_and_goaway_and_no_request_is_recorded(h2server):
    before = requests.get(h2server.url + "/metrics", timeout=10).text
    assert_goaway(answer_to(h2server.port, PREFACE + CLIENT_SETTINGS))
    assert_goaway(answer_to(h2server.port, PREFACE))

    # the worker serves on, and its transfer log and metrics saw no request in those connections
    marker = raw("GET", "/h2-marker", h2server.port)
    assert marker.status == 404
    logged = wait_until(lambda: '"path":"/h2-marker"' in h2server.transfer_log.read_text())
    assert logged, h2server.transfer_log.read_text()[-2000:]
    lines = [json.loads(line) for line in h2server.transfer_log.read_text().splitlines()]
    assert [line["path"] for line in lines if line["status"] >= 400] == ["/h2-marker"]
    after = requests.get(h2server.url + "/metrics", timeout=10).text
    assert requests_4xx(after) - requests_4xx(before) == 1  # the marker's 404, nothing else


def requests_4xx(exposition):
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "pyai_requests_total" and sample.labels.get("status") == "4xx"
    )


def test_the_whole_preface_in_any_pieces_and_only_it_is_http2(h2server):
    """Whichever way the preface's 24 bytes arrive (the blank line after "PRI * HTTP/2.0"
    must not end a head), the answer is the GOAWAY; a request that only starts like it is HTTP/1.1."""
    for split in (1, 5, 17, 18, 23):
        assert_goaway(answer_to(h2server.port, PREFACE[:split], PREFACE[split:], CLIENT_SETTINGS))
    resp = raw("PRI", "*", h2server.port)  # PRI * HTTP/1.1: an HTTP/1.1 request, with a method pyai lacks
    assert resp.status in (400, 405), resp
    resp = raw("PUT", "/h2-a-put", h2server.port, headers=["Content-Length: 3"], body=b"abc")
    assert resp.status == 201, resp
