"""Checksums of stored files: the algorithms, their names, the stored form.

One name per algorithm inside pyai (``sha256``, ``sha512``, ``sha1``, ``md5``,
the hashlib names); the standards spell them two ways:

- RFC 9530 (``Content-Digest``, ``Repr-Digest``): ``sha-256`` (``sha`` and
  ``md5`` are registered as deprecated but still named);
- RFC 3230 (``Digest``; ``Content-MD5`` of RFC 1864): ``SHA-256``, the
  algorithm case-insensitive.

A checksum is stored as the text ``<name>:<hex>`` (see ``encode``/``decode``).
The HTTP fields that carry digests are read and written by ``pyai.web.digest_fields``.
"""

import hashlib

ALGORITHMS = ("sha256", "sha512", "sha1", "md5")
DIGEST_SIZES = {name: hashlib.new(name).digest_size for name in ALGORITHMS}
# RFC 9530 names (Content-Digest, Repr-Digest) and RFC 3230 names (Digest).
RFC9530_NAMES = {"sha256": "sha-256", "sha512": "sha-512", "sha1": "sha", "md5": "md5"}
RFC3230_NAMES = {"sha256": "SHA-256", "sha512": "SHA-512", "sha1": "SHA", "md5": "MD5"}
FROM_RFC9530 = {v: k for k, v in RFC9530_NAMES.items()}
FROM_RFC3230 = {v.lower(): k for k, v in RFC3230_NAMES.items()}
# The config accepts the hashlib names and the HTTP spellings.
_CONFIG_NAMES = {**{n: n for n in ALGORITHMS}, **FROM_RFC9530, **FROM_RFC3230, "none": None}


def parse_config_algorithm(text):
    """``[archive] checksum``: an algorithm name, or None for ``none``."""
    name = text.strip().lower()
    if name not in _CONFIG_NAMES:
        raise ValueError(f"expected one of {', '.join(ALGORITHMS)} or none")
    return _CONFIG_NAMES[name]


def hashers(names):
    """``{name: hashlib object}`` for each algorithm in ``names``."""
    return {name: hashlib.new(name) for name in names}


def encode(name, digest):
    """The stored form of a checksum: ``sha256:<hex>``."""
    return f"{name}:{digest.hex()}"


def decode(text):
    """``(name, digest bytes)`` from the stored form, or None when it is not one."""
    name, _, hexdigest = text.strip().partition(":")
    if name not in DIGEST_SIZES:
        return None
    try:
        digest = bytes.fromhex(hexdigest)
    except ValueError:
        return None
    return (name, digest) if len(digest) == DIGEST_SIZES[name] else None


def mismatch(expected, computed):
    """The first algorithm whose client digest differs from the body's, or None."""
    for name, digest in expected.items():
        if computed[name] != digest:
            return name
    return None
