"""Writes the seed corpus of tests/fuzz/fuzz_chunked.c into tests/fuzz/corpus/chunked (committed).

Each seed is three control bytes (see the harness: the seed of the cuts, the mode, a
limit parameter) and a chunked body: valid ones (extensions, trailers, leading zeros,
1-byte chunks, a pipelined request after the body) and invalid or short ones (bare LF,
overlong lines, sizes that do not fit in int64, a wrong CRLF, max_size).
Run it again after changing the seeds: ``python tests/fuzz/make_corpus.py``.
"""

import hashlib
from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus" / "chunked"
# mode bits: 0-2 largest piece (1, 2, 3, 7, 16, 64, 512, all), 3-4 fed/sent (0 sent, 1 fed, 2-3 mixed),
# 5 small max_line/max_trailer (from the third byte), 6 tee pipe, 7 max_size (1 + 4 * third byte)
SENT, FED, MIXED, SMALL, TEE, MAXSIZE = 0, 1 << 3, 2 << 3, 1 << 5, 1 << 6, 1 << 7


def chunked(*chunks, trailer=b"", ext=b""):
    return b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks) + b"0\r\n" + trailer + b"\r\n"


SEEDS = [
    (7, 0 | MIXED, 0, chunked(b"hello", b"world")),
    (1, 2 | SENT, 0, b"0\r\n\r\n"),
    (3, 1 | MIXED | TEE, 0, chunked(*[b"x"] * 200)),
    (9, 4 | FED, 0, chunked(b"abc" * 50, b"d" * 300, ext=b";a=b")),
    (5, 3 | MIXED, 0, b'5;name=value ; q="a \\"b\\"";flag\r\nhello\r\n5\t;x\r\nworld\r\n0;last\r\nX-Sum: 1\r\n\r\n'),
    (2, 2 | MIXED, 0, chunked(b"abc", trailer=b"X-A: 1\r\nX-B: 2\r\n") + b"GET /next HTTP/1.1\r\n\r\n"),
    (4, 0 | SENT, 0, b"0000000000000000000005\r\nhello\r\n0\r\n\r\n"),
    (6, 5 | MIXED | SMALL, 0x33, b"5;" + b"a" * 40 + b"\r\nhello\r\n0\r\n\r\n"),
    (8, 7 | FED | SMALL, 0x22, b"5;" + b"a" * 200),
    (1, 1 | MIXED | SMALL, 0x21, b"5\r\nhello\r\n0\r\nX: " + b"a" * 100),
    (3, 2 | MIXED, 0, b"5\nhello\r\n0\r\n\r\n"),
    (2, 3 | MIXED, 0, b"5\r\nhello\n0\r\n\r\n"),
    (5, 1 | MIXED, 0, b"5\r\nhello\r\n0\r\nX: 1\n\r\n\r\n"),
    (6, 6 | FED, 0, b"5\r\nhello\r\n0\r\nX: 1\nY: 2\r\n\r\n"),
    (7, 2 | SENT, 0, b"ffffffffffffffffffffffff\r\nhello\r\n"),
    (8, 3 | MIXED, 0, b"8000000000000000\r\nhello\r\n"),
    (9, 1 | MIXED, 0, b"7fffffffffffffff\r\nhello"),
    (1, 4 | MIXED, 0, b"5\r\nhelloXX0\r\n\r\n"),
    (2, 1 | MIXED, 0, b"5\r\nhello\rX0\r\n\r\n"),
    (3, 2 | MIXED, 0, b"5 \r\nhello\r\n0\r\n\r\n"),
    (4, 3 | MIXED, 0, b"5;a=b \r\nhello\r\n0\r\n\r\n"),
    (5, 2 | MIXED, 0, b'5;a="b\r\nhello\r\n0\r\n\r\n'),
    (6, 1 | MIXED, 0, b"5;a=b\rc\r\nhello\r\n0\r\n\r\n"),
    (7, 2 | MIXED, 0, b"-5\r\nhello\r\n0\r\n\r\n"),
    (8, 3 | MIXED, 0, b"0x5\r\nhello\r\n0\r\n\r\n"),
    (9, 2 | MIXED, 0, b"\r\nhello\r\n0\r\n\r\n"),
    (1, 3 | MIXED | MAXSIZE, 2, chunked(b"hello", b"world!")),
    (2, 1 | MIXED | MAXSIZE | TEE, 1, chunked(*[b"y"] * 20)),
    (3, 2 | MIXED, 0, b"5\r\nhel"),
    (4, 1 | MIXED, 0, b"5\r\nhello\r"),
    (5, 3 | MIXED, 0, b"5\r\nhello\r\n0\r\nX: 1\r\n"),
    (6, 4 | MIXED | TEE, 0, chunked(*[bytes([i]) * (i % 9 + 1) for i in range(90)])),
    # first byte: bit 5 reserve and write back, bit 6 feed what follows a complete body,
    # bit 7 on_data refuses the run that passes 1 + third byte / 2 bytes (a hasher's error)
    (0x20 | 1, 3 | MIXED, 0, b"100000\r\n" + b"r" * 600),
    (0x40 | 2, 2 | MIXED, 0, chunked(b"abc") + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"),
    (0x80 | 3, 7 | FED, 10, chunked(b"a" * 5, b"b" * 5, b"c" * 5)),
    # found by the fuzzer: a run refused by on_data, then a framing error in the same piece
    (0xC0, 0x13, 0, b"5\r\n\r\n;n=vZfl\r\xff"),
    (0x80, 7 | FED, 0, b"5\r\nhello\r\nzz\r\n"),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    for seed, mode, param, body in SEEDS:
        data = bytes([seed, mode, param]) + body
        (OUT / hashlib.sha1(data).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    main()
