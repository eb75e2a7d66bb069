"""The HTTP fields that carry digests: what a client says its body hashes to, and
what a stored checksum says in a response.

``Content-Digest`` (RFC 9530) is a structured-field dictionary,
``sha-256=:<base64>:``; ``Digest`` (RFC 3230) is ``SHA-256=<base64>``; and
``Content-MD5`` (RFC 1864) is plain base64.  The algorithms and their names
are ``pyai.archive.checksums``'.
"""

import base64
import binascii
import re

from pyai.archive.checksums import DIGEST_SIZES, FROM_RFC3230, FROM_RFC9530, RFC3230_NAMES, RFC9530_NAMES
from pyai.errors import BadRequest

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")


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
        name = FROM_RFC9530.get(key)
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
        name = FROM_RFC3230.get(key)
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
