"""Chunked PUTs of tiny and of large chunks: the server CPU one wire MB costs.

A ``Transfer-Encoding: chunked`` body of 1-byte chunks (``1\\r\\nx\\r\\n``: 6 wire
bytes per data byte) against one of 1 MiB chunks, sent whole over one socket
(the client is Python: a prepared body and sendall, so it costs the server
nothing).  The figure is the server's CPU (master + workers, /proc/<pid>/stat)
per MB on the wire, framing included: the decoder must read every byte of it.
The row's ratio against the large-chunk row of the same target is in a note.
References in the same run: nginx (DAV PUT) and pyai's Python path on the same bodies.
"""

import socket
import statistics

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

TARGETS = ["pyai", "nginx", "pyai-python"]
# wire bytes of each body, enough for many ticks of the CPU clock (10 ms); the Python
# decoder takes about a second per wire MB of 1-byte chunks, so it gets fewer
WIRE = {"1B": (16 if SETTINGS.quick else 64) * bl.MiB, "1MiB": (64 if SETTINGS.quick else 512) * bl.MiB}
SLOW = {"pyai-python": 4}  # target -> the divisor of WIRE["1B"]
SCENARIOS = {"1B": "chunked PUT 1B chunks", "1MiB": "chunked PUT 1MiB chunks"}
_bodies = {}


def _body(chunk, target):
    """(wire, data length): the chunked framing of about WIRE[chunk] wire bytes."""
    key = (chunk, SLOW.get(target, 1) if chunk == "1B" else 1)
    if key not in _bodies:
        _bodies.clear()  # one body in memory at a time
        if chunk == "1B":
            n = WIRE[chunk] // key[1] // 6
            wire, size = b"1\r\nx\r\n" * n, n
        else:
            block = bytes(range(256)) * 4096  # 1 MiB
            n = WIRE[chunk] // (len(block) + 10)
            wire, size = (b"%x\r\n%s\r\n" % (len(block), block)) * n, n * len(block)
        _bodies[key] = (wire + b"0\r\n\r\n", size)
    return _bodies[key]


def _put(svc, ident, wire):
    """PUT ``wire`` as a chunked body on a new connection; the status."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=300) as sock:
        head = f"PUT /{ident} HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode() + wire)
        answer = b""
        while b"\r\n" not in answer:
            got = sock.recv(4096)
            if not got:
                break
            answer += got
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("chunk", ["1B", "1MiB"])
def test_chunk_sizes(benchmark, bench_env, chunk, target):
    scenario = SCENARIOS[chunk]
    fs = "tmpfs" if "tmpfs" in bench_env.base else "disk"  # the decoding's cost, not the disk's
    svc = bench_env.service(fs, target)
    prefix = bench_env.prefix(fs)
    wire, size = _body(chunk, target)

    def run():
        ident = bl.new_token("cput")
        with bl.measure(svc) as m:
            status = _put(svc, ident, wire)
        stored = prefix / ident
        ok = status == 201 and stored.is_file() and stored.stat().st_size == size
        bl.unlink_quiet(stored)
        cpu_ms_per_mb = m["cpu_s"] * 1e3 / (len(wire) / 1e6)
        RESULTS.add(scenario, target, cpu_ms_per_mb, "CPU ms/wire MB", errors=0 if ok else 1, moved=len(wire),
                    rss_mib=m["rss_mib"], server_cpu_s=m["cpu_s"], status=status, data_bytes=size)  # fmt: skip

    benchmark.pedantic(run, rounds=SETTINGS.large_rounds, iterations=1)
    bl.finish(benchmark, scenario, target)
    _note_ratio(target)


def _note_ratio(target):
    """Once both rows of a target are in: how much more a wire MB of 1-byte chunks costs."""
    rows = [RESULTS.samples.get(SCENARIOS[c], {}).get(target) for c in ("1B", "1MiB")]
    if not all(rows):
        return
    tiny, large = (statistics.median(r["value"] for r in rs) for rs in rows)
    ratio = f"{tiny / large:.1f}x" if large > 0 else "- (large row below the CPU clock's tick)"
    RESULTS.note(
        f"chunk-sizes-{target}",
        f"chunked PUT, {target}: a wire MB of 1-byte chunks costs {tiny:.1f} ms of server CPU, of 1 MiB chunks"
        f" {large:.2f} ms: {ratio}.",
    )
