"""Identities from a TLS front end: the subject DN of a client certificate, mapped to a scope by a grid-mapfile.

pyai terminates no TLS.  A front end that does (nginx) verifies a client's certificate and
passes its subject DN in a request header (``[auth] dn_header``); the header is believed only
from the front ends' addresses (``[auth] dn_proxies``), and the DN is looked up in
``[auth] gridmap_file``, one line a DN: ``"<DN>" <scope> [name]``, the scope ``ro`` or ``rw``
(what a static token of that scope may do, see ``pyai.web.auth``), ``#`` a comment outside the
quotes.  The transfer log names such a request ``dn:<name>``, or ``dn:sha256:`` and 8 hex
digits of the DN's digest for a line without a name.

A DN is written in either of two forms, in the file and in the header alike:

- RFC 2253, most specific first, as nginx's ``$ssl_client_s_dn`` and ``openssl x509 -nameopt
  RFC2253`` print it: ``CN=alice,O=Example\\, Inc.,C=CH``; ``\\`` escapes a character
  (``\\,``) or gives a byte in hex (``\\C3\\BC``, UTF-8);
- OpenSSL's slash form, most general first, as grid-mapfiles are written and ``openssl x509
  -nameopt compat`` prints it: ``/C=CH/O=Example, Inc./CN=alice``; ``\\xC3\\xBC`` gives a byte,
  ``\\`` another character.  A ``/`` starts an attribute only when a type and ``=`` follow
  (``/CN=host/pyai.example.org`` is one attribute).

Both are read into one canonical form, ``Dn``: the (type, value) pairs in the slash form's
order (the certificate's), types upper-cased and their aliases resolved (``E`` and
``emailAddress``, ``2.5.4.3`` and ``CN``), values exact.  The members of a multi-valued RDN
(``+`` in RFC 2253) are pairs of their own, in the order OpenSSL prints them.  OpenSSL's
default ``openssl x509 -subject`` output (``C = CH, O = Example, CN = alice``: most general
first, with commas) is neither form: the comma makes it read as RFC 2253, reversed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import re
import stat
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple, Union

from pyai.errors import ConfigError

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.config import Config

READ, WRITE = "ro", "rw"  # the static tokens' scopes (pyai.web.auth's READ and WRITE)
SCOPES = (READ, WRITE)  # a DN never gets the metrics scope: a scraper has a token
NAME_SYNTAX = re.compile(r"[A-Za-z0-9._-]{1,64}")  # as a token's name
NAME_PREFIX = "dn:"  # no token name holds a ':': the log tells a DN's requests from a token's
LINE_FORMAT = "'\"<DN>\" <scope> [name]' with the scope ro or rw"
ENTRY = "pyai.dn_entry"  # the environ key of the Entry a request was admitted by (pyai.web.auth.check)

Dn = Tuple[Tuple[str, str], ...]  # (attribute type, value) pairs, most general first

_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|(?i:oid\.)?[0-9]+(?:\.[0-9]+)*")
# where a slash-form attribute starts, after its "/": a type and "=" (not a "/" inside a value)
_SLASH_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)=")
_HEX = frozenset("0123456789abcdefABCDEF")
# Other names of one attribute type, upper-cased -> the name OpenSSL prints (upper-cased).
_ALIASES = {
    "E": "EMAILADDRESS",
    "EMAIL": "EMAILADDRESS",
    "USERID": "UID",
    "2.5.4.3": "CN",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "EMAILADDRESS",
}


# --- DNs ---------------------------------------------------------------------------------


def parse_dn(text: str) -> Dn:
    """The canonical form of ``text``, a DN in RFC 2253 or slash form; ValueError saying what is wrong."""
    text = text.lstrip()  # (RFC 2253 keeps a trailing space that is escaped: its reader drops the others)
    if not text:
        raise ValueError("the DN is empty")
    if text.startswith("/"):
        return tuple(_slash(text.rstrip()))
    return tuple(reversed(_rfc2253(text)))


def slash_form(dn: Dn) -> str:
    """``dn`` as OpenSSL's slash form, for people to read (a value's ``/`` and ``\\`` are not escaped)."""
    return "".join(f"/{kind}={value}" for kind, value in dn)


def _attribute_type(text: str) -> str:
    kind = text.strip(" ")
    if not _TYPE.fullmatch(kind):
        raise ValueError(f"{kind!r} is no attribute type" if kind else "an attribute has no type before its '='")
    kind = kind.upper()
    if kind.startswith("OID."):
        kind = kind[4:]
    return _ALIASES.get(kind, kind)


def _utf8(value: bytearray) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a value is not UTF-8") from None


def _rfc2253(text: str) -> List[Tuple[str, str]]:
    """The pairs of an RFC 2253 DN, in its order (most specific first).  Spaces around a type, an
    ``=`` and a separator are left out (RFC 4514 allows a reader that); an escaped one is kept."""
    pairs = []
    i, end = 0, len(text)
    while True:
        equals = text.find("=", i)
        if equals < 0:
            rest = text[i:].strip()
            raise ValueError(f"{rest!r} is no attribute (type=value)" if rest else "the DN ends in a separator")
        kind = _attribute_type(text[i:equals])
        i = equals + 1
        value = bytearray()
        kept = 0  # the length of the value without its unescaped trailing spaces
        while i < end:
            char = text[i]
            if char == "\\":
                hex_pair = text[i + 1 : i + 3]
                if len(hex_pair) == 2 and set(hex_pair) <= _HEX:
                    value += bytes.fromhex(hex_pair)
                    i += 3
                elif i + 1 < end:
                    value += text[i + 1].encode("utf-8")
                    i += 2
                else:
                    raise ValueError("the DN ends in a lone '\\'")
                kept = len(value)
                continue
            if char in ",+;":
                break
            i += 1
            if char == " " and not value:
                continue  # a space before the value
            value += char.encode("utf-8")
            if char != " ":
                kept = len(value)
        pairs.append((kind, _utf8(value[:kept])))
        if i >= end:
            return pairs
        i += 1  # the separator


def _slash(text: str) -> List[Tuple[str, str]]:
    """The pairs of a slash-form DN (``text`` starts with ``/``), in its order (most general first)."""
    pairs = []
    i, end = 1, len(text)
    while True:
        equals = text.find("=", i)
        if equals < 0:
            raise ValueError(f"{text[i:]!r} is no attribute (type=value)" if text[i:] else "the DN ends in '/'")
        kind = _attribute_type(text[i:equals])
        i = equals + 1
        value = bytearray()
        while i < end:
            char = text[i]
            if char == "\\":
                hex_pair = text[i + 2 : i + 4]
                if text[i + 1 : i + 2] in ("x", "X") and len(hex_pair) == 2 and set(hex_pair) <= _HEX:
                    value += bytes.fromhex(hex_pair)
                    i += 4
                elif i + 1 < end:
                    value += text[i + 1].encode("utf-8")
                    i += 2
                else:
                    raise ValueError("the DN ends in a lone '\\'")
                continue
            if char == "/" and _SLASH_ATTRIBUTE.match(text, i + 1):
                break
            value += char.encode("utf-8")
            i += 1
        pairs.append((kind, _utf8(value)))
        if i >= end:
            return pairs
        i += 1  # the "/"


# --- the grid-mapfile --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One line of the grid-mapfile: the DN, its scope (READ or WRITE) and its name in the transfer log."""

    dn: Dn
    scope: str
    name: str  # dn:<the line's name>, or dn:sha256:<8 hex digits of the DN's digest>

    @property
    def owner(self) -> str:
        """Whom the Tape API's requests made with the certificate belong to: its DN (whatever its name)."""
        return "x509 " + json.dumps(self.dn)


def default_name(dn: Dn) -> str:
    """The name of a DN the line names not: ``dn:sha256:`` and 8 hex digits of the DN's digest."""
    return NAME_PREFIX + "sha256:" + hashlib.sha256(json.dumps(dn).encode("ascii")).hexdigest()[:8]


def parse_gridmap(lines: Iterable[str]) -> List[Entry]:
    """The Entries of the lines of a grid-mapfile; ValueError naming the line."""
    entries: List[Entry] = []
    seen: Dict[Dn, int] = {}  # DN: the line that mapped it
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith('"'):
            raise ValueError(f"line {number}: expected {LINE_FORMAT}")
        close = _closing_quote(line)
        if close < 0:
            raise ValueError(f"line {number}: the DN's closing quote is missing")
        rest = line[close + 1 :]
        fields = rest.split("#", 1)[0].split()  # after the DN, '#' starts a comment
        if (rest and not rest[0].isspace()) or len(fields) not in (1, 2) or fields[0] not in SCOPES:
            raise ValueError(f"line {number}: expected {LINE_FORMAT}")
        try:
            dn = parse_dn(line[1:close])
        except ValueError as exc:
            raise ValueError(f"line {number}: bad DN: {exc}") from None
        if dn in seen:
            raise ValueError(f"line {number}: the DN is mapped already, by line {seen[dn]}")
        if len(fields) == 2:
            if not NAME_SYNTAX.fullmatch(fields[1]):
                raise ValueError(f"line {number}: a name is 1 to 64 of letters, digits and - . _")
            name = NAME_PREFIX + fields[1]
        else:
            name = default_name(dn)
        seen[dn] = number
        entries.append(Entry(dn, fields[0], name))
    if not entries:
        raise ValueError(f"it maps no DN ({LINE_FORMAT})")
    return entries


def _closing_quote(line: str) -> int:
    """The index of the '"' that ends the DN opened at 0 (a '\\' escapes the next character); -1 for none."""
    i = 1
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == '"':
            return i
        i += 1
    return -1


def read_gridmap_file(path: str) -> List[Entry]:
    """The Entries of the grid-mapfile ``path``; ConfigError (one line) when unreadable, writable by
    others than its owner, or malformed.  (It holds no secret: everyone may read it.)"""
    what = "the grid-mapfile"
    try:
        with open(path, "rb") as handle:
            # the mode of what was opened, not of what the name points to a moment later
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{what} {path} is not a regular file")
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                # who may write a line may give themselves rw
                raise ConfigError(
                    f"{what} {path} is writable by others than its owner (mode {stat.S_IMODE(mode):04o}): "
                    "run chmod go-w on it"
                )
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    lines = []
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"bad grid-mapfile {path}: line {number}: not UTF-8") from None
    try:
        return parse_gridmap(lines)
    except ValueError as exc:
        raise ConfigError(f"bad grid-mapfile {path}: {exc}") from None


# --- the request's DN ------------------------------------------------------------------------------


def environ_key(header: str) -> str:
    """The WSGI environ key of the request header ``header`` (``X-SSL-Client-DN``: ``HTTP_X_SSL_CLIENT_DN``)."""
    return "HTTP_" + header.upper().replace("-", "_")


Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class DnMap:
    """The DNs of a grid-mapfile, the header a front end passes a DN in, and the front ends it is
    believed from: ``proxies``, addresses or networks as ``[auth] dn_proxies`` has them."""

    def __init__(self, header: str, proxies: Iterable[str], entries: Iterable[Entry]) -> None:
        self.key = environ_key(header)
        self.proxies: Tuple[Network, ...] = tuple(ipaddress.ip_network(proxy) for proxy in proxies)
        self._entries = {entry.dn: entry for entry in entries}

    def __len__(self) -> int:
        return len(self._entries)

    def trusts(self, address: str) -> bool:
        """True when ``address`` (a peer's, as REMOTE_ADDR has it) is one of the front ends'."""
        try:
            peer = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False  # a unix socket's peer has no address: no proxy named it
        mapped = getattr(peer, "ipv4_mapped", None)  # ::ffff:10.0.0.1 on a dual-stack bind is 10.0.0.1
        return any(peer in network or (mapped is not None and mapped in network) for network in self.proxies)

    def presented(self, environ: WSGIEnvironment) -> Optional[str]:
        """The DN the request's front end passes; None when there is none, or when the peer is no
        front end (a client's own header is never believed)."""
        text = environ.get(self.key)
        if not text or not self.trusts(environ.get("REMOTE_ADDR", "")):
            return None
        return text

    def find(self, text: str) -> Optional[Entry]:
        """The Entry of the DN ``text`` (either form); None for a DN the file maps not, or no DN at all."""
        try:
            return self._entries.get(parse_dn(text))
        except ValueError:
            return None


def dn_map(config: Config) -> Optional[DnMap]:
    """The DnMap of ``config``, None without ``[auth] dn_header``; ConfigError (one line) for a
    grid-mapfile that cannot serve."""
    if not config.auth_dn_header:
        return None
    return DnMap(config.auth_dn_header, config.auth_dn_proxies, read_gridmap_file(config.auth_gridmap_file))


def check_config(config: Config) -> None:
    """Read the grid-mapfile, so a bad one stops the service with one line."""
    if config.auth_gridmap_file:
        read_gridmap_file(config.auth_gridmap_file)


def entry_of(environ: WSGIEnvironment) -> Optional[Entry]:
    """The Entry the request was admitted by; None when it came with no client certificate's DN."""
    return environ.get(ENTRY)
