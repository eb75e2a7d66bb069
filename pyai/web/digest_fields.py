"""The HTTP fields that carry digests: what a client says its body hashes to, which
digests it wants in the answer, and what a stored checksum says in a response.

``Content-Digest`` (RFC 9530) is a structured-field dictionary,
``sha-256=:<base64>:``; ``Digest`` (RFC 3230) is ``SHA-256=<base64>`` (and
``ADLER32=<8 hex digits>``, as grid storage sends it); ``Content-MD5`` (RFC
1864) is plain base64.  ``Want-Digest`` (RFC 3230: ``adler32, md5;q=0.5``) and
``Want-Repr-Digest`` (RFC 9530: ``sha-256=10, md5=3``) say what to answer with.
The algorithms and their names are ``pyai.archive.checksums``'.
"""

import base64
import binascii
import dataclasses
import re
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Tuple

from pyai.archive.checksums import DIGEST_SIZES, FROM_RFC3230, FROM_RFC9530, RFC3230_NAMES, RFC9530_NAMES
from pyai.errors import BadRequest

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SF_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_HEX = re.compile(r"[0-9a-fA-F]{1,8}")
_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")
_QVALUE = re.compile(r"(0(\.[0-9]{0,3})?|1(\.0{0,3})?)")
_WEIGHT = re.compile(r"[0-9]|10")
# Want-Digest takes either spelling (clients write ``sha-256`` and ``adler`` too).
_WANT_NAMES = {**FROM_RFC9530, **FROM_RFC3230}
_MAX_WANT_MEMBERS = 32  # more is no client's honest ask: the rest is ignored


class Fields(Protocol):
    """A request's header fields by case-insensitive name (werkzeug's EnvironHeaders)."""

    def get(self, key: str) -> Optional[str]: ...


@dataclasses.dataclass(frozen=True)
class Wanted:
    """The digests a request asks for, best first: for ``Digest`` (from Want-Digest) and for
    ``Repr-Digest`` (from Want-Repr-Digest); None where the header is absent."""

    digest: Optional[Tuple[str, ...]] = None
    repr_digest: Optional[Tuple[str, ...]] = None

    def names(self) -> Tuple[str, ...]:
        """Every algorithm asked for, once."""
        return tuple(dict.fromkeys((self.digest or ()) + (self.repr_digest or ())))


def wanted_digests(headers: Fields) -> Optional[Wanted]:
    """The ``Wanted`` of a request (``headers``: a case-insensitive mapping), or None when it has
    neither Want-Digest nor Want-Repr-Digest.

    Unknown algorithms are ignored, and so are malformed members (a q-value or
    weight that is not one): a server may ignore what it does not understand
    in these fields (RFC 9530 section 4), and a HEAD is no place to refuse a
    client over how it says what it would like."""
    want_digest = headers.get("Want-Digest")
    want_repr = headers.get("Want-Repr-Digest")
    if want_digest is None and want_repr is None:
        return None
    return Wanted(
        parse_want_digest(want_digest) if want_digest is not None else None,
        parse_want_repr_digest(want_repr) if want_repr is not None else None,
    )


def parse_want_digest(value: str) -> Tuple[str, ...]:
    """RFC 3230 ``Want-Digest``: ``adler32, md5;q=0.5, SHA-256;q=1`` -> pyai names by preference
    (q=0: not wanted; no q: 1; ties keep their order)."""
    ranked: List[Tuple[float, int, str]] = []
    for position, member in enumerate(value.split(",")[:_MAX_WANT_MEMBERS]):
        name, *params = (part.strip() for part in member.split(";"))
        q = 1.0
        for param in params:
            key, _, text = param.partition("=")
            if key.strip().lower() == "q":
                text = text.strip()
                q = float(text) if _QVALUE.fullmatch(text) else -1.0
        algorithm = _WANT_NAMES.get(name.lower())
        if algorithm is not None and q > 0:
            ranked.append((-q, position, algorithm))
    return _best_first(ranked)


def parse_want_repr_digest(value: str) -> Tuple[str, ...]:
    """RFC 9530 ``Want-Repr-Digest`` (a dictionary of integer weights 0-10; 0: not wanted)
    -> pyai names by preference."""
    ranked: List[Tuple[float, int, str]] = []
    for position, member in enumerate(value.split(",")[:_MAX_WANT_MEMBERS]):
        key, eq, rest = member.partition("=")
        weight = rest.split(";", 1)[0].strip()
        algorithm = FROM_RFC9530.get(key.strip().lower())
        if algorithm is None or not eq or not _WEIGHT.fullmatch(weight) or weight == "0":
            continue
        ranked.append((-int(weight), position, algorithm))
    return _best_first(ranked)


def _best_first(ranked: Iterable[Tuple[float, int, str]]) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(algorithm for _, _, algorithm in sorted(ranked)))


def digest_value(name: str, digest: bytes) -> str:
    """The RFC 3230 ``Digest`` value of one algorithm: 8 lowercase hex digits for adler32
    (what davix and the grid doors use), base64 for the others (davix takes both for md5)."""
    if name == "adler32":
        return digest.hex()
    return base64.b64encode(digest).decode("ascii")


def response_headers(
    digests: Mapping[str, bytes], wanted: Optional[Wanted] = None, partial: bool = False
) -> Dict[str, str]:
    """``Digest`` and ``Repr-Digest`` for the digests ``{name: digest}`` of a stored file; {} without any.

    Without ``wanted`` (no Want-* in the request) both fields carry every
    digest given (the caller gives the one primary stored digest).  With it,
    each field carries the algorithms its Want-* header asked for that are in
    ``digests``, best first, and a field nobody asked for is left out.
    ``Digest`` (RFC 3230) describes the body sent, so a part of the file gets
    only ``Repr-Digest``, which is the whole file's whatever part is sent.
    Members of ``Digest`` are joined by a bare comma: davix splits the field on
    "," and matches the algorithm at the start of each piece.
    """
    if wanted is None:
        for_digest = for_repr = [name for name in RFC9530_NAMES if name in digests]
    else:
        for_digest = [name for name in wanted.digest or () if name in digests]
        for_repr = [name for name in wanted.repr_digest or () if name in digests]
    headers: Dict[str, str] = {}
    if for_repr:
        headers["Repr-Digest"] = ", ".join(
            f"{RFC9530_NAMES[name]}=:{base64.b64encode(digests[name]).decode('ascii')}:" for name in for_repr
        )
    if for_digest and not partial:
        members = (f"{RFC3230_NAMES[name]}={digest_value(name, digests[name])}" for name in for_digest)
        headers["Digest"] = ",".join(members)
    return headers


def expected_digests(headers: Fields) -> Dict[str, bytes]:
    """What the client says the body hashes to: ``{name: digest bytes}`` from
    ``Content-Digest``, ``Digest`` and ``Content-MD5`` (``headers`` is a
    case-insensitive mapping).

    Algorithms pyai does not know are ignored (RFC 9530 section 6) -- unless
    nothing else is left to check, which is a 400: the client asked for a
    check this archive cannot make.  A malformed header is a 400; two headers
    naming one algorithm with different values can never both match: 400 too.
    """
    expected: Dict[str, bytes] = {}
    unknown: List[str] = []  # the algorithms named that pyai does not know
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


def _parse_content_digest(value: str, unknown: List[str]) -> Iterator[Tuple[str, bytes]]:
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


def _parse_digest(value: str, unknown: List[str]) -> Iterator[Tuple[str, bytes]]:
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
        if name == "adler32":
            yield name, _decode_adler32(encoded.strip())
            continue
        if name == "md5":
            yield name, _decode_md5(encoded.strip(), "Digest")
            continue
        yield name, _decode_base64(encoded.strip(), "Digest", name)


def _parse_content_md5(value: str, unknown: List[str]) -> Iterator[Tuple[str, bytes]]:
    yield "md5", _decode_md5(value.strip(), "Content-MD5")


def _decode_md5(text: str, header: str) -> bytes:
    """An md5 digest in base64 (RFC 1864, RFC 3230) or in 32 hex digits: gfal2 sends
    ``Content-MD5: <hex>`` with ``gfal-copy -K MD5:<hex>``, and older grid doors answer
    ``Digest: md5=<hex>``.  Unambiguous: an md5 in base64 is 24 characters."""
    if _MD5_HEX.fullmatch(text):
        return bytes.fromhex(text)
    return _decode_base64(text, header, "md5")


def _split_list(value: str, header: str) -> List[str]:
    members = [part.strip() for part in value.split(",")]
    if not any(members) or not all(members):
        raise _malformed(header, "empty list member")
    return members


def _decode_adler32(text: str) -> bytes:
    """RFC 3230's ADLER32: hex digits (davix pads to 8, some servers send fewer)."""
    if not _HEX.fullmatch(text):
        raise _malformed("Digest", "the adler32 value is not 8 hex digits")
    return int(text, 16).to_bytes(4, "big")


def _decode_base64(text: str, header: str, name: str) -> bytes:
    if not _BASE64.fullmatch(text):
        raise _malformed(header, f"the {name} value is not base64")
    try:
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(header, f"the {name} value is not base64") from None
    if len(digest) != DIGEST_SIZES[name]:
        raise _malformed(header, f"a {name} digest is {DIGEST_SIZES[name]} bytes, not {len(digest)}")
    return digest


def _malformed(header: str, why: str) -> BadRequest:
    return BadRequest(f"malformed {header} header: {why}", detail=f"malformed {header}")
