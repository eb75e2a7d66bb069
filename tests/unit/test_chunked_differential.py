"""The C chunked decoder (pyai.native._cimpl) against its pure-Python twin (pyai.native._pyimpl).

Random chunked bodies, valid and corrupted (a byte replaced, inserted or removed,
the body cut short), with random extensions, trailers and bytes after the body,
are cut into random pieces, each fed (the server's read-ahead) or sent on the
socket, and decoded by both twins with the same limits, one call per piece.
After every call both must agree on what it returned or raised (errno and the
bytes written before), the phase and the bytes decoded; at the end on the
file, the digest (and the length of every update of the hasher: the same
runs, small ones merged alike), the trailers and the leftover.  The fuzzer (tests/fuzz)
checks the C decoder alone, longer and with a sanitizer.
"""

import errno
import os
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyai.native import _cimpl, _pyimpl

from .peers import CountingHasher

TWINS = (_cimpl, _pyimpl)
# the bytes framing is made of, and some it must refuse
FRAMING = b'\r\n;=" \t\\0aAfFgxz-\x00\x7f\x80'

EXTENSIONS = st.lists(
    st.sampled_from([
        b";a", b";name=value", b' ; q="a \\"b\\""', b";\tflag", b";a= b", b"\t;x", b';e=""', b';u="\x80\xff"',
        b";a=", b"; ", b';a="', b";a=b ", b";\x80", b";a=b\rc", b";a=\"x\x7f\"", b";=b", b"  ",
    ]),
    max_size=3,
).map(b"".join)  # fmt: skip
SIZE_FORMATS = st.sampled_from([b"%x", b"%X", b"%04x", b"%x "])
DATA = st.one_of(st.binary(min_size=1, max_size=24), st.integers(4090, 4100).map(lambda n: b"L" * n))
CHUNK = st.tuples(DATA, SIZE_FORMATS, EXTENSIONS)
TRAILER = st.lists(st.sampled_from([b"X-A: 1", b"Y:", b"Digest: sha-256=abc", b"a\nb", b"Z: " + b"z" * 40]), max_size=3)
MUTATION = st.tuples(st.sampled_from(["replace", "insert", "delete", "cut"]), st.floats(0, 1), st.sampled_from(FRAMING))


@st.composite
def wires(draw):
    """The bytes on the wire: a chunked body (maybe corrupted), then what follows it."""
    parts = []
    for data, fmt, ext in draw(st.lists(CHUNK, max_size=8)):
        parts.append(fmt % len(data) + ext + b"\r\n" + data + b"\r\n")
    parts.append(b"0" + draw(EXTENSIONS) + b"\r\n")
    trailer = draw(TRAILER)
    parts.append(b"".join(t + b"\r\n" for t in trailer) + b"\r\n")
    parts.append(draw(st.sampled_from([b"", b"GET /next HTTP/1.1\r\n\r\n", b"\r\n"])))
    wire = bytearray(b"".join(parts))
    for op, where, byte in draw(st.lists(MUTATION, max_size=3)):
        at = min(int(where * len(wire)), len(wire) - 1)
        if op == "replace":
            wire[at] = byte
        elif op == "insert":
            wire.insert(at, byte)
        elif op == "delete":
            del wire[at]
        else:
            del wire[at:]
        if not wire:
            break
    return bytes(wire)


@st.composite
def deliveries(draw, wire):
    """The wire cut into pieces at random points, each to be fed (True) or sent on the socket."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=12))))
    bounds = [0, *[c for c in cuts if c < len(wire)], len(wire)]
    return [(wire[a:b], draw(st.booleans())) for a, b in zip(bounds, bounds[1:]) if b > a]


LIMITS = st.tuples(
    st.sampled_from([_pyimpl.CHUNKED_MAX_LINE, 1, 3, 8, 20]),
    st.sampled_from([_pyimpl.CHUNKED_MAX_TRAILER, 1, 6, 30]),
    st.sampled_from([0, 0, 1, 10, 4096, 5000]),
)


def _call(fio, rx, fd, decoder, hashers, max_size):
    try:
        return ("returned", fio.recv_chunked_to_file(rx, fd, decoder, 10, hashers, patience=0, max_size=max_size))
    except OSError as exc:
        return ("raised", exc.errno, exc.characters_written)


def _run(fio, pieces, max_line, max_trailer, max_size):
    """Decode the pieces with one twin: what every call did, and where it all ended."""
    rx, tx = socket.socketpair()
    fd = os.memfd_create("chunked")
    hasher = CountingHasher()
    decoder = fio.ChunkedDecoder(max_line=max_line, max_trailer=max_trailer)
    steps = []
    try:
        for piece, fed in pieces:
            if fed:
                decoder.feed(piece)
            else:
                tx.sendall(piece)
            steps.append((_call(fio, rx.fileno(), fd, decoder, [hasher], max_size), decoder.phase, decoder.decoded))
        if decoder.phase not in ("done", "failed"):
            tx.shutdown(socket.SHUT_WR)  # the peer closes: the call returns, the phase says where it stopped
            steps.append((_call(fio, rx.fileno(), fd, decoder, [hasher], max_size), decoder.phase, decoder.decoded))
        rx.setblocking(False)
        try:
            unread = rx.recv(1 << 20)
        except BlockingIOError:
            unread = b""
        os.lseek(fd, 0, os.SEEK_SET)
        written = os.read(fd, 1 << 20)
        return {
            "steps": steps,
            "complete": decoder.complete,
            "written": written,
            "digest": hasher.sha.hexdigest(),
            "updates": hasher.updates,
            "trailers": bytes(decoder.trailers),
            "leftover": bytes(decoder.leftover),
            "unread": unread,
        }
    finally:
        os.close(fd)
        rx.close()
        tx.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), wires(), LIMITS)
def test_c_and_python_decode_alike(data, wire, limits):
    pieces = data.draw(deliveries(wire))
    c, py = (_run(fio, pieces, *limits) for fio in TWINS)
    assert c == py
    assert len(c["written"]) == c["steps"][-1][2]  # what was decoded was written


def test_the_generator_makes_bodies_both_twins_take_and_refuse():
    """The strategies reach the outcomes that matter (else the test above proves little)."""
    seen = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(st.data(), wires(), LIMITS)
    def sample(data, wire, limits):
        result = _run(_cimpl, data.draw(deliveries(wire)), *limits)
        last = result["steps"][-1] if result["steps"] else (("returned", 0), "size", 0)
        seen.add(last[1] if last[0][0] == "returned" else (last[1], last[0][1]))

    sample()
    assert {"done", ("failed", errno.EPROTO), ("failed", errno.EFBIG)} <= seen
    assert seen & {"size", "data", "crlf", "trailer"}  # bodies that ended early
