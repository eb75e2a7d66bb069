"""Optional bearer-token authentication: who may read, who may write.

Off unless ``[auth] tokens_file`` names a file of tokens, one a line after its
scope: ``ro <token>`` (read) or ``rw <token>`` (read and write); ``#`` starts a
comment.  When on, every request except ``GET /`` and ``HEAD /`` (the health
check) needs ``Authorization: Bearer <token>``: none, a malformed one or an
unknown one is 401, a read-only token on PUT, PATCH or DELETE is 403.  POST
(stage from tape) is a read: it changes no data, and readers such as cartd
stage a file before they GET it.  A route may name other methods that need
``rw`` (``writes``: the Tape REST API's POST and DELETE, see pyai.web.app).

Only the SHA-256 digests of the tokens are kept.  A presented token is digested
and compared with every configured digest by ``hmac.compare_digest``, without
stopping at a match, so the time taken tells nothing about how close a guess
came, how long the tokens are or which one matched.  No token is ever logged
or put in an error message.
"""

import hashlib
import hmac
import ipaddress
import os
import re
import socket
import stat

from pyai.errors import ArchiveError, ConfigError, Forbidden
from pyai.web.receive import abandon_body

READ, WRITE = "ro", "rw"
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
OPEN_METHODS_OF_ROOT = frozenset({"GET", "HEAD"})  # the health check answers anyone
# Shorter tokens are guessable; 16 characters of base64 are 96 bits.
MIN_TOKEN_LENGTH = 16
# RFC 6750's b64token: the only characters a client can send after "Bearer ".
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9._~+/-]+=*")
BEARER = re.compile(r"Bearer +(\S+) *", re.IGNORECASE)
CHALLENGE = 'Bearer realm="pyai"'


class Unauthorized(ArchiveError):
    """No valid token: 401 with the challenge that tells the client to send one."""

    status = 401

    def __init__(self, message, *, token_given, detail=None):
        super().__init__(message, detail=detail)
        challenge = CHALLENGE + (', error="invalid_token"' if token_given else "")
        self.headers = {"WWW-Authenticate": challenge}


class InsufficientScope(Forbidden):
    """A valid read-only token on a method that writes: 403."""

    def __init__(self, message, *, detail=None):
        super().__init__(message, detail=detail)
        self.headers = {"WWW-Authenticate": CHALLENGE + ', error="insufficient_scope"'}


def _digest(token):
    return hashlib.sha256(token.encode("latin-1")).digest()


class Tokens:
    """The configured tokens, kept as (SHA-256 digest, scope) pairs."""

    def __init__(self, entries):
        self._digests = tuple((_digest(token), scope) for scope, token in entries)

    def __len__(self):
        return len(self._digests)

    def scope_of(self, token):
        """READ or WRITE for a configured token, None for any other."""
        presented = _digest(token)
        found = None
        for digest, scope in self._digests:
            # every digest is compared, even after a match (no early exit)
            if hmac.compare_digest(presented, digest):
                found = scope
        return found


def parse_tokens(lines):
    """[(scope, token)] from the lines of a tokens file; ValueError naming the line, never the token."""
    entries, seen = [], set()
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()  # '#' is not a token character: the rest is a comment
        if not fields:
            continue
        if len(fields) != 2 or fields[0] not in (READ, WRITE):
            raise ValueError(f"line {number}: expected 'ro <token>' or 'rw <token>'")
        scope, token = fields
        if not TOKEN_SYNTAX.fullmatch(token):
            raise ValueError(f"line {number}: a token may only hold letters, digits and - . _ ~ + / (then =)")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"line {number}: a token needs at least {MIN_TOKEN_LENGTH} characters")
        if token in seen:
            raise ValueError(f"line {number}: the token appears twice")
        seen.add(token)
        entries.append((scope, token))
    if not entries:
        raise ValueError("it holds no token ('ro <token>' or 'rw <token>' lines)")
    return entries


def read_tokens_file(path):
    """The Tokens of ``path``; ConfigError (one line) when unreadable, open to everyone or malformed."""
    try:
        with open(path, encoding="latin-1") as handle:
            # the mode of what was opened, not of what the name points to a moment later
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"the tokens file {path} is not a regular file")
            if mode & (stat.S_IROTH | stat.S_IWOTH):
                raise ConfigError(
                    f"the tokens file {path} is readable or writable by everyone "
                    f"(mode {stat.S_IMODE(mode):04o}): run chmod o-rwx on it"
                )
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror}") from None
    try:
        return Tokens(parse_tokens(lines))
    except ValueError as exc:
        raise ConfigError(f"bad tokens file {path}: {exc}") from None


def check_config(config):
    """Read the tokens file once at start-up so a bad one stops the service with one line."""
    if config.auth_tokens_file:
        read_tokens_file(config.auth_tokens_file)


def check(tokens, method, path, environ, writes=WRITE_METHODS):
    """Raise Unauthorized or InsufficientScope unless the request may go on.

    ``writes``: the methods that need a read-write token on this route.
    Runs before the view: no storage has been touched and no body byte read.
    A refused request's body is never read, so a connection that carries one
    is closed (draining an unauthenticated upload would be work for anyone).
    """
    if path == "/" and method in OPEN_METHODS_OF_ROOT:
        return
    header = environ.get("HTTP_AUTHORIZATION")
    match = BEARER.fullmatch(header) if header else None
    scope = tokens.scope_of(match.group(1)) if match else None
    try:
        if scope is None:
            if header is None:
                raise Unauthorized(
                    "this archive needs a bearer token (Authorization: Bearer <token>)",
                    token_given=False,
                    detail="no token",
                )
            if match is None:
                # another scheme (Basic, ...) is no attempt at a bearer token: no error code (RFC 6750 3.1)
                tried = header[:6].lower() == "bearer"
                raise Unauthorized(
                    "the Authorization header must be 'Bearer <token>'",
                    token_given=tried,
                    detail="malformed Authorization",
                )
            raise Unauthorized("the bearer token is not valid here", token_given=True, detail="unknown token")
        if scope == READ and method in writes:
            raise InsufficientScope(
                f"the token is read-only and {method} changes the archive", detail="read-only token"
            )
    except ArchiveError:
        if _has_body(environ):
            abandon_body(environ)
        raise


def _has_body(environ):
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or environ.get("CONTENT_LENGTH", "") not in ("", "0")


def non_loopback(addresses):
    """The bind addresses (gunicorn's ``cfg.address``) that other hosts may reach, as text."""
    exposed = []
    for address in addresses:
        if not isinstance(address, tuple):
            continue  # a unix socket path (or an inherited fd): no network address to judge
        host, port = address[0], address[1]
        if not _is_loopback(host):
            exposed.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return exposed


def _is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:  # a host name: loopback only when every address it names is
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def warn_if_open(config, addresses, log):
    """Log one warning when the service listens beyond this host and asks for no token."""
    if config.auth_tokens_file:
        return
    exposed = non_loopback(addresses)
    if exposed:
        log.warning(
            "listening on %s without authentication: anyone who can reach it can read, store and delete files "
            "(set [auth] tokens_file or PAI_AUTH_TOKENS_FILE)",
            ", ".join(exposed),
        )
