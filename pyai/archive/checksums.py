"""Checksums of stored files: the algorithms, their names, the stored form.

One name per algorithm inside pyai (``sha256``, ``sha512``, ``sha1``, ``md5``,
the hashlib names, and ``adler32``, zlib's); the standards spell them two ways:

- RFC 9530 (``Content-Digest``, ``Repr-Digest``): ``sha-256`` (``sha``,
  ``md5`` and ``adler`` are registered as deprecated but still named);
- RFC 3230 (``Digest``; ``Content-MD5`` of RFC 1864): ``SHA-256``,
  ``ADLER32``, the algorithm case-insensitive.

A file keeps several checksums at once, stored as the text
``sha256:<hex> md5:<hex> adler32:<hex>`` (see ``encode_set``/``decode_set``;
one ``sha256:<hex>``, the form of earlier versions, still reads).  The HTTP
fields that carry digests are read and written by ``pyai.web.digest_fields``.
"""

import hashlib
import zlib

from pyai.archive.beside import Beside

ALGORITHMS = ("sha256", "sha512", "sha1", "md5", "adler32")
# Strong enough to say "these are the stored bytes" (no crafted collisions).
STRONG = ("sha256", "sha512")
# What a PUT computes and keeps unless ``[archive] checksum`` says otherwise: sha256
# (write-once retries compare it), adler32 (what grid clients ask for) and md5.
DEFAULT_CONFIG = "sha256, adler32, md5"
# RFC 9530 names (Content-Digest, Repr-Digest) and RFC 3230 names (Digest).
RFC9530_NAMES = {"sha256": "sha-256", "sha512": "sha-512", "sha1": "sha", "md5": "md5", "adler32": "adler"}
RFC3230_NAMES = {"sha256": "SHA-256", "sha512": "SHA-512", "sha1": "SHA", "md5": "MD5", "adler32": "ADLER32"}
FROM_RFC9530 = {v: k for k, v in RFC9530_NAMES.items()}
FROM_RFC3230 = {v.lower(): k for k, v in RFC3230_NAMES.items()}
# The config accepts pyai's names and the HTTP spellings.
_CONFIG_NAMES = {**{n: n for n in ALGORITHMS}, **FROM_RFC9530, **FROM_RFC3230}


class Adler32:
    """zlib's Adler-32 with hashlib's interface (``update``, ``digest``, ``copy``), as the
    receive loops call hashers; ``update`` takes any buffer (a memoryview of a receive
    buffer is hashed in place) and zlib releases the GIL while it sums a large one."""

    name = "adler32"
    digest_size = 4
    block_size = 1

    def __init__(self, data=b""):
        self._value = zlib.adler32(data)

    def update(self, data):
        self._value = zlib.adler32(data, self._value)

    def digest(self):
        return self._value.to_bytes(4, "big")

    def hexdigest(self):
        return f"{self._value:08x}"

    def copy(self):
        twin = Adler32()
        twin._value = self._value
        return twin


def new(name):
    """A fresh hasher of the algorithm ``name``."""
    return Adler32() if name == "adler32" else hashlib.new(name)


DIGEST_SIZES = {name: new(name).digest_size for name in ALGORITHMS}


def parse_config_algorithms(text):
    """``[archive] checksum``: a comma-separated list of algorithm names, or ``none``
    (an empty tuple); the order is kept, without repeats."""
    names = []
    for part in text.split(","):
        word = part.strip().lower()
        if not word:
            continue
        if word == "none":
            if len(text.split(",")) > 1:
                raise ValueError("none cannot be listed with algorithms")
            return ()
        if word not in _CONFIG_NAMES:
            raise ValueError(f"expected algorithms out of {', '.join(ALGORITHMS)}, or none")
        if _CONFIG_NAMES[word] not in names:
            names.append(_CONFIG_NAMES[word])
    if not names:
        raise ValueError(f"expected algorithms out of {', '.join(ALGORITHMS)}, or none")
    return tuple(names)


# Hashed on a thread of its own (``pyai.archive.beside``) when other algorithms are
# computed too: md5 is the slowest, and beside the others it no longer bounds a large body.
BESIDE = frozenset({"md5"})


def hashers(names):
    """``{name: hasher}`` for each algorithm in ``names``; md5 beside the others (on a
    thread of its own once the bytes are many) when there are others."""
    return {name: Beside(new(name)) if name in BESIDE and len(names) > 1 else new(name) for name in names}


def compute(read, names, on_block=None):
    """``{name: digest}`` of everything ``read(size)`` gives until it gives nothing."""
    running = hashers(names)
    while True:
        data = read(1 << 20)
        if not data:
            return {name: hasher.digest() for name, hasher in running.items()}
        for hasher in running.values():
            hasher.update(data)
        if on_block is not None:
            on_block(len(data))


def encode(name, digest):
    """The stored form of one checksum: ``sha256:<hex>``."""
    return f"{name}:{digest.hex()}"


def decode(text):
    """``(name, digest bytes)`` from the stored form of one checksum, or None when it is not one."""
    name, _, hexdigest = text.strip().partition(":")
    if name not in DIGEST_SIZES:
        return None
    try:
        digest = bytes.fromhex(hexdigest)
    except ValueError:
        return None
    return (name, digest) if len(digest) == DIGEST_SIZES[name] else None


def encode_set(digests):
    """The stored form of several checksums: ``sha256:<hex> md5:<hex>`` (in ALGORITHMS order)."""
    return " ".join(encode(name, digests[name]) for name in ALGORITHMS if name in digests)


def decode_set(text):
    """``{name: digest}`` from the stored form (one checksum or several); words that are
    not a checksum pyai knows are skipped, so a newer version's algorithms do not hide the rest."""
    found: dict = {}
    for word in text.split():
        checksum = decode(word)
        if checksum is not None:
            found.setdefault(*checksum)
    return found


def strongest(digests):
    """The first strong ``(name, digest)`` of ``digests`` (STRONG order), or None."""
    for name in STRONG:
        if name in digests:
            return name, digests[name]
    return None


def mismatch(expected, computed):
    """The first algorithm whose client digest differs from the body's, or None."""
    for name, digest in expected.items():
        if computed[name] != digest:
            return name
    return None
