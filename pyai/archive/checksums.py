"""Checksums of stored files: algorithm names, the HTTP digest headers, the stored form.

One name per algorithm inside pyai (``sha256``, ``sha512``, ``sha1``, ``md5``,
the hashlib names); HTTP spells them two ways:

- RFC 9530 (``Content-Digest``, ``Repr-Digest``): a structured-field
  dictionary, ``sha-256=:<base64>:`` (``sha`` and ``md5`` are registered as
  deprecated but still named);
- RFC 3230 (``Digest``; ``Content-MD5`` of RFC 1864): ``SHA-256=<base64>``,
  the algorithm case-insensitive.

``expected_digests`` reads what a client says its body hashes to;
``response_headers`` writes what a stored checksum says.  A checksum is
stored as the text ``<name>:<hex>`` (see ``encode``/``decode``).
"""

import base64
import binascii
import hashlib
import re

from pyai.errors import BadRequest

ALGORITHMS = ("sha256", "sha512", "sha1", "md5")
DIGEST_SIZES = {name: hashlib.new(name).digest_size for name in ALGORITHMS}
# RFC 9530 names (Content-Digest, Repr-Digest) and RFC 3230 names (Digest).
RFC9530_NAMES = {"sha256": "sha-256", "sha512": "sha-512", "sha1": "sha", "md5": "md5"}
RFC3230_NAMES = {"sha256": "SHA-256", "sha512": "SHA-512", "sha1": "SHA", "md5": "MD5"}
_FROM_RFC9530 = {v: k for k, v in RFC9530_NAMES.items()}
_FROM_RFC3230 = {v.lower(): k for k, v in RFC3230_NAMES.items()}
# The config accepts the hashlib names and the HTTP spellings.
_CONFIG_NAMES = {**{n: n for n in ALGORITHMS}, **_FROM_RFC9530, **_FROM_RFC3230, "none": None}
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")


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


def response_headers(checksum, partial=False):
    """``Digest`` and ``Repr-Digest`` for a stored ``(name, digest)``; {} without one.

    ``Digest`` (RFC 3230) describes the body sent, so a part of the file gets
    only ``Repr-Digest``, which is the whole file's whatever part is sent.
    """
    if checksum is None:
        return {}
    name, digest = checksum
    b64 = base64.b64encode(digest).decode("ascii")
    headers = {"Repr-Digest": f"{RFC9530_NAMES[name]}=:{b64}:"}
    if not partial:
        headers["Digest"] = f"{RFC3230_NAMES[name]}={b64}"
    return headers


def expected_digests(headers):
    """What the client says the body hashes to: ``{name: digest bytes}`` from
    ``Content-Digest``, ``Digest`` and ``Content-MD5`` (``headers`` is a
    case-insensitive mapping).

    Algorithms pyai does not know are ignored (RFC 9530 section 6) -- unless
    nothing else is left to check, which is a 400: the client asked for a
    check this archive cannot make.  A malformed header is a 400; two headers
    naming one algorithm with different values can never both match: 400 too.
    """
    expected = {}
    unknown = []
    sources = (
        ("Content-Digest", _parse_content_digest),
        ("Digest", _parse_digest),
        ("Content-MD5", _parse_content_md5),
    )
    for header, parse in sources:
        value = headers.get(header)
        if value is None:
            continue
        for name, digest in parse(value, unknown):
            if expected.get(name, digest) != digest:
                raise _malformed(header, f"it gives {name} another value than the other digest headers")
            expected[name] = digest
    if unknown and not expected:
        raise BadRequest(
            f"cannot check the digest algorithm(s) {', '.join(sorted(set(unknown)))[:200]}: "
            f"this archive knows {', '.join(RFC9530_NAMES.values())}",
            detail="unsupported digest algorithm",
        )
    return expected


def _parse_content_digest(value, unknown):
    """RFC 9530: a structured-field dictionary of byte sequences (parameters ignored)."""
    for member in _split_list(value, "Content-Digest"):
        key, eq, rest = member.partition("=")
        key = key.strip()
        if not eq or not _SF_KEY.fullmatch(key):
            raise _malformed("Content-Digest", "expected algorithm=:base64:")
        item = rest.split(";", 1)[0].strip()
        if len(item) < 2 or item[0] != ":" or item[-1] != ":":
            raise _malformed("Content-Digest", f"the {key} value is not a byte sequence (:base64:)")
        name = _FROM_RFC9530.get(key)
        if name is None:
            unknown.append(key)
            continue
        yield name, _decode_base64(item[1:-1], "Content-Digest", name)


def _parse_digest(value, unknown):
    """RFC 3230: ``algorithm=base64`` pairs, the algorithm case-insensitive."""
    for member in _split_list(value, "Digest"):
        key, eq, encoded = member.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise _malformed("Digest", "expected algorithm=base64")
        name = _FROM_RFC3230.get(key)
        if name is None:
            unknown.append(key)
            continue
        yield name, _decode_base64(encoded.strip(), "Digest", name)


def _parse_content_md5(value, unknown):
    yield "md5", _decode_base64(value.strip(), "Content-MD5", "md5")


def _split_list(value, header):
    members = [part.strip() for part in value.split(",")]
    if not any(members) or not all(members):
        raise _malformed(header, "empty list member")
    return members


def _decode_base64(text, header, name):
    if not _BASE64.fullmatch(text):
        raise _malformed(header, f"the {name} value is not base64")
    try:
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(header, f"the {name} value is not base64") from None
    if len(digest) != DIGEST_SIZES[name]:
        raise _malformed(header, f"a {name} digest is {DIGEST_SIZES[name]} bytes, not {len(digest)}")
    return digest


def _malformed(header, why):
    return BadRequest(f"malformed {header} header: {why}", detail=f"malformed {header}")


def mismatch(expected, computed):
    """The first algorithm whose client digest differs from the body's, or None."""
    for name, digest in expected.items():
        if computed[name] != digest:
            return name
    return None
