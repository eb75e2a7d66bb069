"""Tests of the chunked receive (``ChunkedDecoder``, ``recv_chunked_to_file``), against both
pyai.native._cimpl (C) and pyai.native._pyimpl (Python).

The C extension must be built: its tests fail, not skip, when it is missing.
"""

import errno
import hashlib
import os
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from .peers import CountingHasher, Sender
from .writeback import WRITTEN_BEHIND, sync_file_range_calls

ROOT = Path(__file__).resolve().parents[2]
KiB, MiB = 1024, 1024 * 1024


@pytest.fixture
def pair():
    rx, tx = socket.socketpair()
    with rx, tx:
        yield rx, tx


def encode(chunks, trailer=b"", ext=b""):
    """The chunked framing of ``chunks`` (the last chunk and the trailer section added)."""
    return b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks if c) + b"0\r\n" + trailer + b"\r\n"


def receive(fio, rx, fd, decoder=None, **kw):
    decoder = decoder or fio.ChunkedDecoder()
    return fio.recv_chunked_to_file(rx.fileno(), fd, decoder, kw.pop("timeout", 10), **kw), decoder


# ---- bodies of every shape -----------------------------------------------------

SHAPES = {
    "empty": [],
    "one-byte": [b"x"],
    "one-byte-chunks": [bytes([i % 256]) for i in range(3000)],
    "curl-16k": [os.urandom(16 * KiB) for _ in range(100)] + [os.urandom(1234)],
    "1m-chunks": [os.urandom(MiB) for _ in range(5)],
    "random": [os.urandom(random.Random(7).randrange(1, 300 * KiB)) for _ in range(40)],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_bodies_are_byte_exact_and_hashed(fio, pair, out, shape):
    rx, tx = pair
    fd, read_back = out
    chunks = SHAPES[shape]
    body = b"".join(chunks)
    sender = Sender(tx, encode(chunks) + b"GET /next HTTP/1.1\r\n\r\n")
    hashers = [hashlib.sha256(), hashlib.md5()]
    n, decoder = receive(fio, rx, fd, hashers=hashers)
    sender.finish()
    assert n == len(body) == decoder.decoded
    assert decoder.complete and decoder.phase == "done"
    assert read_back() == body
    assert [h.digest() for h in hashers] == [hashlib.new(h.name, body).digest() for h in hashers]
    # what followed the body was read (in large pieces) but handed back, none of it lost
    rest = decoder.leftover
    rx.setblocking(False)
    try:
        rest += rx.recv(1000)
    except BlockingIOError:
        pass
    assert rest == b"GET /next HTTP/1.1\r\n\r\n"


def test_tiny_chunks_are_hashed_once_per_piece(fio, pair, out):
    """A piece of 1-byte chunks is one update of the hashers (in C one callback taking the
    GIL), not one per chunk: that cost 40 times the CPU of large chunks per wire byte."""
    rx, _ = pair
    fd, read_back = out
    chunks = [bytes([i % 256]) for i in range(3000)] + [b"L" * 5000, b"a", b"b"]
    body = b"".join(chunks)
    decoder = fio.ChunkedDecoder()
    decoder.feed(encode(chunks))  # one piece
    hasher = CountingHasher()
    assert fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, [hasher]) == len(body)
    assert decoder.complete and read_back() == body
    assert hasher.sha.digest() == hashlib.sha256(body).digest()
    assert hasher.updates == [3000, 5002]  # a large run starts anew; the small ones after it join it


def test_one_100mib_chunk(fio, pair, out):
    rx, tx = pair
    fd, read_back = out
    body = os.urandom(100 * MiB)
    sender = Sender(tx, b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n")
    hasher = hashlib.sha256()
    n, decoder = receive(fio, rx, fd, hashers=[hasher], writeback=8 * MiB, reserve=8 * MiB)
    sender.finish()
    assert n == len(body) and decoder.complete
    assert hasher.digest() == hashlib.sha256(body).digest()
    assert read_back() == body


def test_split_at_every_byte(fio, out):
    """A small body sent in two parts, cut at each position: the decoder resumes wherever it stopped."""
    fd, read_back = out
    wire = encode([b"hello", b"", b"world!" * 3], trailer=b"X-A: 1\r\nX-B: 2\r\n", ext=b";a=b")
    body = b"hello" + b"world!" * 3
    for cut in range(1, len(wire)):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        decoder = fio.ChunkedDecoder()
        rx, tx = socket.socketpair()
        with rx, tx:
            tx.sendall(wire[:cut])
            with pytest.raises(BlockingIOError):
                fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, patience=0.01)
            assert decoder.phase != "done"
            tx.sendall(wire[cut:] + b"NEXT")
            fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, patience=1)
        assert decoder.complete, cut
        assert read_back() == body, cut
        assert decoder.trailers == b"X-A: 1\r\nX-B: 2", cut
        assert decoder.leftover == b"NEXT", cut


def test_fed_bytes_are_decoded_first(fio, pair, out):
    rx, tx = pair
    fd, read_back = out
    wire = encode([b"abc" * 1000, b"def"]) + b"NEXT"
    for fed in (0, 2, 5, 3000, len(wire) - 4, len(wire)):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        decoder = fio.ChunkedDecoder()
        decoder.feed(wire[:fed])
        tx.sendall(wire[fed:])
        fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10)
        assert decoder.complete and read_back() == b"abc" * 1000 + b"def"
        if fed >= len(wire) - 4:  # the body ended in what was fed: the socket was not read
            assert decoder.leftover == wire[len(wire) - 4 : fed]
            if fed < len(wire):
                assert rx.recv(10) == wire[fed:]
        else:
            assert decoder.leftover == b"NEXT"


def test_extensions_and_trailers(fio, pair, out):
    rx, tx = pair
    fd, read_back = out
    wire = b'5;name=value ; q="a \\"b\\"";flag\r\nhello\r\n5\t;x\r\nworld\r\n0;last\r\nX-Sum: 1\r\n\r\n'
    tx.sendall(wire)
    n, decoder = receive(fio, rx, fd)
    assert n == 10 and read_back() == b"helloworld"
    assert decoder.trailers == b"X-Sum: 1" and decoder.leftover == b""


def test_a_complete_decoder_reads_nothing_more(fio, pair, out):
    rx, tx = pair
    fd, _ = out
    tx.sendall(b"0\r\n\r\n")
    n, decoder = receive(fio, rx, fd)
    assert n == 0 and decoder.complete
    tx.sendall(b"MORE")
    assert fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10) == 0
    assert rx.recv(10) == b"MORE"


# ---- parking: the call gives up, the next one goes on where it stopped ------------------


@pytest.mark.parametrize(
    "first, rest",
    [
        (b"1", b"0\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n"),  # mid chunk-size line
        (b"10;ext=", b"1\r\n" + b"z" * 16 + b"\r\n0\r\n\r\n"),  # mid extension
        (b"10\r\nzzzz", b"z" * 12 + b"\r\n0\r\n\r\n"),  # mid data
        (b"10\r\n" + b"z" * 16 + b"\r", b"\n0\r\n\r\n"),  # mid CRLF after the data
        (b"10\r\n" + b"z" * 16 + b"\r\n0\r\nX-A: ", b"1\r\n\r\n"),  # mid trailer
    ],
    ids=["size-line", "extension", "data", "crlf", "trailer"],
)
def test_parks_and_resumes(fio, pair, out, first, rest):
    rx, tx = pair
    fd, read_back = out
    decoder = fio.ChunkedDecoder()
    tx.sendall(first)
    with pytest.raises(BlockingIOError) as info:
        fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, patience=0.05)
    assert info.value.errno == errno.EAGAIN
    assert info.value.idle >= 0.04
    written = info.value.characters_written
    sender = Sender(tx, rest, pause=0.05)
    n = fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, patience=5)
    sender.finish()
    assert written + n == 16 and decoder.complete
    assert read_back() == b"z" * 16


def test_budget_ends_a_call_that_keeps_receiving(fio, pair, out):
    rx, tx = pair
    fd, _ = out
    decoder = fio.ChunkedDecoder()
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            tx.sendall(b"1\r\nx\r\n")
            time.sleep(0.005)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        with pytest.raises(BlockingIOError) as info:
            fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, patience=5, budget=0.1)
        assert info.value.characters_written > 0
    finally:
        stop.set()
        t.join()


def test_timeout_counts_waited(fio, pair, out):
    rx, _ = pair
    fd, _ = out
    with pytest.raises(TimeoutError) as info:
        fio.recv_chunked_to_file(rx.fileno(), fd, fio.ChunkedDecoder(), 0.3, waited=0.25)
    assert info.value.idle >= 0.29


# ---- bodies that end early, or are framed wrong ---------------------------------------


@pytest.mark.parametrize(
    "wire, phase",
    [
        (b"", "size"),
        (b"5\r\nhel", "data"),
        (b"5\r\nhello", "crlf"),
        (b"5\r\nhello\r", "crlf"),
        (b"5\r\nhello\r\n1", "size"),
        (b"5\r\nhello\r\n0\r\n", "trailer"),
        (b"5\r\nhello\r\n0\r\nX: 1\r\n", "trailer"),
    ],
)
def test_peer_closing_inside_the_body(fio, pair, out, wire, phase):
    rx, tx = pair
    fd, _ = out
    tx.sendall(wire)
    tx.shutdown(socket.SHUT_WR)
    n, decoder = receive(fio, rx, fd)
    assert not decoder.complete and decoder.phase == phase
    assert n == min(5, max(0, len(wire) - 3))


BAD = {
    "bad-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "hex-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "space-before-crlf": b"5 \r\nhello\r\n0\r\n\r\n",
    "empty-size": b"\r\nhello\r\n0\r\n\r\n",
    "missing-crlf": b"5\r\nhelloXX0\r\n\r\n",
    "cr-only": b"5\r\nhello\rX0\r\n\r\n",
    "data-longer": b"3\r\nhello\r\n0\r\n\r\n",
    "int64-overflow": b"8000000000000000\r\nhello\r\n",
    "huge": b"ffffffffffffffffffffffff\r\nhello\r\n",
    "bad-extension": b"5;\x00=\r\nhello\r\n0\r\n\r\n",
    "extension-bare-cr": b"5;a=b\rc\r\nhello\r\n0\r\n\r\n",
    "extension-trailing-blank": b"5;a=b \r\nhello\r\n0\r\n\r\n",
    "size-line-too-long": b"5;" + b"a" * 70000,
    "trailer-too-long": b"5\r\nhello\r\n0\r\nX: " + b"a" * 300000,
    "trailer-bare-lf": b"5\r\nhello\r\n0\r\nX: 1\n",
}


@pytest.mark.parametrize("name", BAD)
def test_framing_errors_are_eproto(fio, pair, out, name):
    rx, tx = pair
    fd, _ = out
    sender = Sender(tx, BAD[name])
    decoder = fio.ChunkedDecoder()
    with pytest.raises(OSError) as info:
        fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, patience=2)
    assert info.value.errno == errno.EPROTO
    assert decoder.phase == "failed"
    with pytest.raises(OSError) as again:  # the decoder stays failed
        fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, patience=0.01)
    assert again.value.errno == errno.EPROTO and again.value.characters_written == 0
    sender.finish()


def test_leading_zeros_are_not_an_overflow(fio, pair, out):
    rx, tx = pair
    fd, read_back = out
    tx.sendall(b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n")
    n, decoder = receive(fio, rx, fd)
    assert n == 5 and decoder.complete and read_back() == b"hello"


def test_a_long_line_that_arrives_whole_is_gunicorns_call(fio, pair, out):
    """gunicorn checks a line's bound only when it must read more to find its end: so does the decoder."""
    rx, tx = pair
    fd, read_back = out
    decoder = fio.ChunkedDecoder()
    decoder.feed(b"5;" + b"a" * 9000 + b"\r\nhello\r\n0\r\n\r\n")
    assert fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10) == 5 and read_back() == b"hello"


@pytest.mark.parametrize("max_size, ok", [(10, True), (9, False)])
def test_max_size(fio, pair, out, max_size, ok):
    rx, tx = pair
    fd, read_back = out
    tx.sendall(encode([b"hello", b"world"]))
    decoder = fio.ChunkedDecoder()
    if ok:
        assert fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, max_size=max_size) == 10
        return
    with pytest.raises(OSError) as info:
        fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, max_size=max_size)
    assert info.value.errno == errno.EFBIG and decoder.phase == "failed"
    assert len(read_back()) <= max_size  # nothing past it was written


def test_hasher_failure_stops_the_receive(fio, pair, out):
    class Broken:
        def update(self, data):
            raise MemoryError("hasher broke")

    rx, tx = pair
    fd, _ = out
    tx.sendall(encode([b"x" * 1000]))
    with pytest.raises(MemoryError, match="hasher broke"):
        fio.recv_chunked_to_file(rx.fileno(), fd, fio.ChunkedDecoder(), 10, [Broken()])


def test_hasher_failure_wins_over_a_later_framing_error(fio, pair, out):
    """The hashers see a piece's data when it is written, after its framing was read: a hasher's
    error, about bytes before the framing error, is the one raised (by both twins)."""

    class Broken:
        def update(self, data):
            raise MemoryError("hasher broke")

    rx, _ = pair
    fd, _ = out
    decoder = fio.ChunkedDecoder()
    decoder.feed(b"5\r\nhello\r\nzz\r\n")  # one piece: data, then a size that is not hex
    with pytest.raises(MemoryError, match="hasher broke"):
        fio.recv_chunked_to_file(rx.fileno(), fd, decoder, 10, [Broken()])


def test_urgent_byte_does_not_spin(fio, out):
    """TCP urgent data: the socket is readable, the byte is not data; the receive neither spins nor hangs."""
    fd, read_back = out
    with socket.create_server(("127.0.0.1", 0)) as listener:
        tx = socket.create_connection(listener.getsockname())
        rx, _ = listener.accept()
    with rx, tx:
        tx.sendall(b"5\r\nhel")
        tx.send(b"!", socket.MSG_OOB)
        sender = Sender(tx, b"lo\r\n0\r\n\r\n", pause=0.2)
        start = time.process_time()
        n, decoder = receive(fio, rx, fd)
        sender.finish()
        assert decoder.complete and n == 5 and read_back() == b"hello"
        assert time.process_time() - start < 0.15  # napped, not spun, while waiting 0.2 s


_WRITEBACK_SCRIPT = r"""
import importlib, os, socket, sys, threading
fio = importlib.import_module(sys.argv[1])
rx, tx = socket.socketpair()
body = b"x" * ((40 << 20) + 5)
wire = b"".join(b"%x\r\n" % len(body[i:i + 65536]) + body[i:i + 65536] + b"\r\n" for i in range(0, len(body), 65536))
t = threading.Thread(target=tx.sendall, args=(wire + b"0\r\n\r\n",))
t.start()
fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
fio.recv_chunked_to_file(rx.fileno(), fd, fio.ChunkedDecoder(), 10, writeback=8 << 20)
t.join()
"""


def test_writeback_behind_the_receive(fio, tmp_path):
    assert sync_file_range_calls(fio, tmp_path, _WRITEBACK_SCRIPT) == WRITTEN_BEHIND
