"""Optional bearer-token authentication: who may read, who may write, who may scrape.

Off unless ``[auth] tokens_file`` names a file of tokens, one a line:
``<scope> <token> [name]``, the scope ``ro`` (read), ``rw`` (read and write)
or ``metrics`` (``GET``/``HEAD /metrics`` only, for a Prometheus scraper);
``#`` starts a comment.  The name (``[A-Za-z0-9._-]``, at most 64) is what the
transfer log shows for the token; without one it is ``sha256:`` and the first
8 hex digits of the token's SHA-256, which tells the lines of one token
apart and nothing about the token (32 bits of a digest of a secret of at
least 96 bits).  When on, every request except ``GET /`` and ``HEAD /``
(the health check) needs ``Authorization: Bearer <token>``: none, a
malformed one or an unknown one is 401, a read-only token on PUT, PATCH or
DELETE is 403, and so is a metrics token anywhere but ``/metrics``.  POST
(stage from tape) is a read: it changes no data, and readers such as cartd
stage a file before they GET it.  A route may name other methods that need
``rw`` (``writes``: the Tape REST API's POST and DELETE, see pyai.web.app).

Beside them: WLCG profile JWTs (``pyai.web.wlcg_tokens``, with ``[auth] jwt_issuers``), and the
tokens this archive issues itself to the clients it knows, for their X.509 jobs
(``pyai.web.issued_tokens``, with ``[auth] token_secret_file``): both are read as grants of
storage activities on paths (``pyai.web.scopes``).  Every accepted token leaves what it may do
in the environ (``RIGHTS``), where a token request reads whose rights it may hand on.

A request with no Authorization header at all may instead be admitted by the client certificate a
TLS front end verified (``pyai.web.gridmap``, with ``[auth] dn_header``): its DN's line in the
grid-mapfile gives it a scope, ``ro`` or ``rw``, which it holds as a static token of that scope.

Only the SHA-256 digests of the tokens are kept.  A presented token is digested
and compared with every configured digest by ``hmac.compare_digest``, without
stopping at a match, so the time taken tells nothing about how close a guess
came, how long the tokens are or which one matched.  No token is ever logged
or put in an error message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import os
import re
import socket
import stat
from typing import (
    TYPE_CHECKING,
    AbstractSet,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Optional,
    Protocol,
    Set,
    Tuple,
    Union,
    cast,
)

from pyai.errors import ArchiveError, ConfigError, Forbidden
from pyai.web import gridmap, issued_tokens
from pyai.web.gridmap import DnMap
from pyai.web.issued_tokens import IssuedTokens
from pyai.web.openapi import METRICS as METRICS_PATH  # the one path a metrics token may read
from pyai.web.receive import abandon_body
from pyai.web.scopes import GRANT, STAT_RIGHT, Grant, ScopeRule, describe
from pyai.web.wlcg_tokens import STORAGE_ACTIVITIES, KeysUnavailable, TokenRejected, WlcgTokens, looks_like_jwt

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.config import Config

READ, WRITE, METRICS = "ro", "rw", "metrics"
SCOPES = (READ, WRITE, METRICS)
METRICS_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
OPEN_METHODS_OF_ROOT = frozenset({"GET", "HEAD"})  # the health check answers anyone
# Shorter tokens are guessable; 16 characters of base64 are 96 bits.
MIN_TOKEN_LENGTH = 16
# RFC 6750's b64token: the only characters a client can send after "Bearer ".
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9._~+/-]+=*")
NAME_SYNTAX = re.compile(r"[A-Za-z0-9._-]{1,64}")
LINE_FORMAT = "'<scope> <token> [name]' with the scope ro, rw or metrics"
BEARER = re.compile(r"Bearer +(\S+) *", re.IGNORECASE)
CHALLENGE = 'Bearer realm="pyai"'
RIGHTS = "pyai.rights"  # the environ key of what the accepted token may do (Rights), set by check()
# What a static token may do, as storage activities: what its scope allows on the data routes.
STATIC_ACTIVITIES: Dict[str, FrozenSet[str]] = {
    READ: frozenset({"storage.read", "storage.stage", "storage.poll", STAT_RIGHT}),  # GET, HEAD, PROPFIND, POST
    WRITE: frozenset(STORAGE_ACTIVITIES | {STAT_RIGHT}),
    METRICS: frozenset(),  # /metrics only: no path of the archive
}


class Unauthorized(ArchiveError):
    """No valid token: 401 with the challenge that tells the client to send one."""

    status = 401

    def __init__(self, message: str, *, token_given: bool, detail: Optional[str] = None) -> None:
        super().__init__(message, detail=detail)
        challenge = CHALLENGE + (', error="invalid_token"' if token_given else "")
        self.headers = {"WWW-Authenticate": challenge}


class InsufficientScope(Forbidden):
    """A valid token whose scope does not cover the request (ro on a write, metrics off /metrics): 403."""

    def __init__(self, message: str, *, detail: Optional[str] = None) -> None:
        super().__init__(message, detail=detail)
        self.headers = {"WWW-Authenticate": CHALLENGE + ', error="insufficient_scope"'}


def replacing_needs_modify() -> InsufficientScope:
    """The refusal of a replacement of a stored file (a PUT, or a COPY pull, under allow_overwrite)
    by a WLCG token that grants storage.create and not storage.modify."""
    return InsufficientScope(
        "the token grants storage.create, and replacing a stored file needs storage.modify",
        detail="insufficient WLCG scope",
    )


class Rights(Protocol):
    """What an accepted token may do: a static token's ``StaticRights``, a WLCG token's ``Grant``
    or an issued token's ``IssuedGrant``."""

    @property
    def name(self) -> str:
        """The token's name in the transfer log."""

    def allows(self, activities: Iterable[str], path: str) -> bool:
        """True when one of ``activities`` (storage activities, or the stat right) is the token's on ``path``."""


@dataclasses.dataclass(frozen=True)
class StaticRights:
    """What a static token of ``scope`` (named ``name``) may do: the same activities on every path."""

    scope: str
    name: str

    def allows(self, activities: Iterable[str], path: str) -> bool:
        wanted = {activities} if isinstance(activities, str) else set(activities)
        return not wanted.isdisjoint(STATIC_ACTIVITIES[self.scope])


def rights_of(environ: WSGIEnvironment) -> Optional[Rights]:
    """What the request's token may do; None when no token was checked (authentication off, an open path)."""
    return environ.get(RIGHTS)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("latin-1")).digest()


def default_name(token: str) -> str:
    """The name of a token the file names not: ``sha256:`` and 8 hex digits of its digest."""
    return "sha256:" + _digest(token).hex()[:8]


class Tokens:
    """The configured tokens, kept as (SHA-256 digest, scope, name) triples."""

    def __init__(self, entries: Iterable[Tuple[str, ...]]) -> None:
        """``entries``: (scope, token) or (scope, token, name) each; a missing name is the default one."""
        self._digests = tuple(
            (_digest(token), scope, rest[0] if rest else default_name(token)) for scope, token, *rest in entries
        )

    def __len__(self) -> int:
        return len(self._digests)

    def find(self, token: str) -> Tuple[Optional[str], Optional[str]]:
        """(scope, name) of a configured token, (None, None) for any other."""
        presented = _digest(token)
        found: Tuple[Optional[str], Optional[str]] = (None, None)
        for digest, scope, name in self._digests:
            # every digest is compared, even after a match (no early exit)
            if hmac.compare_digest(presented, digest):
                found = (scope, name)
        return found

    def scope_of(self, token: str) -> Optional[str]:
        """READ, WRITE or METRICS for a configured token, None for any other."""
        return self.find(token)[0]


def parse_tokens(lines: Iterable[str]) -> List[Tuple[str, str, str]]:
    """[(scope, token, name)] from the lines of a tokens file; ValueError naming the line, never the token."""
    entries: List[Tuple[str, str, str]] = []
    seen: Set[str] = set()
    names: Dict[str, int] = {}  # name: the line that gave it
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()  # '#' is not a token character: the rest is a comment
        if not fields:
            continue
        if len(fields) not in (2, 3) or fields[0] not in SCOPES:
            raise ValueError(f"line {number}: expected {LINE_FORMAT}")
        scope, token = fields[:2]
        if not TOKEN_SYNTAX.fullmatch(token):
            raise ValueError(f"line {number}: a token may only hold letters, digits and - . _ ~ + / (then =)")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"line {number}: a token needs at least {MIN_TOKEN_LENGTH} characters")
        if token in seen:
            raise ValueError(f"line {number}: the token appears twice")
        if len(fields) == 3:
            name = fields[2]
            if not NAME_SYNTAX.fullmatch(name):
                raise ValueError(f"line {number}: a name is 1 to 64 of letters, digits and - . _")
        else:
            name = default_name(token)
        if name in names:
            raise ValueError(f"line {number}: its name is taken by line {names[name]} (names must differ)")
        seen.add(token)
        names[name] = number
        entries.append((scope, token, name))
    if not entries:
        raise ValueError(f"it holds no token ({LINE_FORMAT})")
    return entries


def read_tokens_file(path: str) -> Tokens:
    """The Tokens of ``path``; ConfigError (one line) when unreadable, open to everyone, writable by
    its group or malformed."""
    try:
        with open(path, encoding="latin-1") as handle:
            # the mode of what was opened, not of what the name points to a moment later
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"the tokens file {path} is not a regular file")
            _check_mode(path, mode, "the tokens file")
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror}") from None
    try:
        return Tokens(parse_tokens(lines))
    except ValueError as exc:
        raise ConfigError(f"bad tokens file {path}: {exc}") from None


def _check_mode(path: str, mode: int, what: str) -> None:
    """ConfigError unless only the owner may write the file and only the owner and group may read it.

    A group-writable file is refused too: a member of the group could add an ``rw`` token (or
    put a secret of their own in the token secret file).  ``what`` names the file in the message.
    """
    group_fix = "g-w," if mode & stat.S_IWGRP else ""
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(
            f"{what} {path} is readable or writable by everyone "
            f"(mode {stat.S_IMODE(mode):04o}): run chmod {group_fix}o-rwx on it"
        )
    if group_fix:
        raise ConfigError(
            f"{what} {path} is writable by its group (mode {stat.S_IMODE(mode):04o}): run chmod g-w,o-rwx on it"
        )


def read_secret_file(path: str) -> bytes:
    """The secret of the token secret file ``path``: its bytes, a final line end left out; ConfigError
    (one line, naming nothing of the secret) when unreadable, open to everyone, writable by its
    group or shorter than ``issued_tokens.MIN_SECRET`` bytes."""
    what = "the token secret file"
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode  # of what was opened, as for the tokens file
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{what} {path} is not a regular file")
            _check_mode(path, mode, what)
            secret = handle.read(1 << 20)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if secret.endswith(b"\n"):
        secret = secret[:-2] if secret.endswith(b"\r\n") else secret[:-1]
    if len(secret) < issued_tokens.MIN_SECRET:
        raise ConfigError(
            f"{what} {path} holds fewer than {issued_tokens.MIN_SECRET} bytes: "
            f"fill it with, e.g., head -c {issued_tokens.MIN_SECRET} /dev/urandom"
        )
    return secret


def token_issuer(config: Config) -> Optional[IssuedTokens]:
    """The issuer of tokens of ``config``, None without ``[auth] token_secret_file``; ConfigError
    (one line) for a secret file that cannot serve."""
    if not config.auth_token_secret_file:
        return None
    return IssuedTokens(read_secret_file(config.auth_token_secret_file))


def check_tokens_file(config: Config) -> None:
    """Read the tokens file, so a bad one stops the service with one line."""
    if config.auth_tokens_file:
        read_tokens_file(config.auth_tokens_file)


def check_secret_file(config: Config) -> None:
    """Read the token secret file, so a bad one stops the service with one line."""
    token_issuer(config)


def check_config(config: Config) -> None:
    """Read the tokens file, the token secret file and the grid-mapfile, and build the WLCG token
    verifier, once at start-up so a bad one stops the service with one line."""
    check_tokens_file(config)
    check_secret_file(config)
    check_wlcg_config(config)
    gridmap.check_config(config)


def wlcg_tokens(config: Config) -> Optional[WlcgTokens]:
    """The WLCG token verifier of ``config`` (not started), None without issuers; ConfigError
    (one line) for settings that cannot work."""
    if not config.auth_jwt_issuers:
        return None
    try:
        return WlcgTokens(config.auth_jwt_issuers, config.auth_jwt_audiences, config.auth_jwt_ca_file)
    except ValueError as exc:
        raise ConfigError(f"bad WLCG token settings: {exc}") from None


def check_wlcg_config(config: Config) -> None:
    """What ``wlcg_tokens`` would refuse, at start-up and for check-config (without starting it)."""
    # a setting that did not parse is missing here: its own problem is told
    if all(hasattr(config, name) for name in ("auth_jwt_audiences", "auth_jwt_ca_file")):
        wlcg_tokens(config)


class IssuerUnavailable(ArchiveError, status=503):
    """A WLCG token whose issuer's keys were never fetched (it is down, or not yet asked)."""

    def __init__(self, message: str, *, retry_after: int, detail: Optional[str] = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


def check(
    tokens: Optional[Tokens],
    method: str,
    path: str,
    environ: WSGIEnvironment,
    writes: AbstractSet[str] = WRITE_METHODS,
    wlcg: Optional[WlcgTokens] = None,
    rule: Optional[ScopeRule] = None,
    issued: Optional[IssuedTokens] = None,
    dns: Optional[DnMap] = None,
) -> Optional[str]:
    """The name of the request's token (None on the open health check); Unauthorized or
    InsufficientScope when the request may not go on.

    ``tokens``: the static tokens, ``wlcg``: the WLCG token verifier, ``issued``: the tokens
    issued here, ``dns``: the DNs of client certificates a front end passes (each may be None).
    ``writes``: the methods that need a read-write static token (or DN) on this route; ``rule``:
    what a WLCG or issued token must grant on it (None: it takes none).  A token the static ones
    do not know is read as an issued token when it starts with ``pyai1.``, else tried as a WLCG
    token; the grant of a verified one is left in ``environ`` (``scopes.GRANT``).  What the token
    may do is left there too (``RIGHTS``).  A request without an Authorization header whose front
    end passes a client certificate's DN is admitted by the DN's entry (left in ``environ`` too,
    ``gridmap.ENTRY``) as a static token of its scope; a token sent beside a certificate is the
    one checked.
    Runs before the view: no storage has been touched and no body byte read.
    A refused request's body is never read, so a connection that carries one
    is closed (draining an unauthenticated upload would be work for anyone).
    """
    if path == "/" and method in OPEN_METHODS_OF_ROOT:
        return None
    header = environ.get("HTTP_AUTHORIZATION")
    match = BEARER.fullmatch(header) if header else None
    scope, name = tokens.find(match.group(1)) if match and tokens is not None else (None, None)
    read_only = "the token is read-only"
    entry = None
    try:
        # only with no Authorization at all: a client that sends a token is judged by it
        presented = dns.presented(environ) if dns is not None and header is None else None
        if dns is not None and presented is not None:
            entry = dns.find(presented)
            if entry is None:
                raise Unauthorized(
                    "the client certificate's DN is not mapped here", token_given=False, detail="unmapped DN"
                )
            scope, name = entry.scope, entry.name
            read_only = "the client certificate's DN is mapped read-only"
        if scope is None and match is not None and match.group(1).startswith(issued_tokens.PREFIX):
            return _check_issued(issued, match.group(1), method, path, environ, rule)
        if scope is None and match is not None and wlcg is not None and looks_like_jwt(match.group(1)):
            return _check_wlcg(wlcg, match.group(1), method, path, environ, rule)
        if scope is None:
            if header is None:
                certificate = " or a client certificate it knows" if dns is not None else ""
                raise Unauthorized(
                    f"this archive needs a bearer token (Authorization: Bearer <token>){certificate}",
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
        if scope == METRICS:
            if path != METRICS_PATH or method not in METRICS_METHODS:
                raise InsufficientScope(
                    f"the token may only read {METRICS_PATH} (GET or HEAD)", detail="metrics-only token"
                )
        elif scope == READ and method in writes:
            raise InsufficientScope(f"{read_only} and {method} changes the archive", detail="read-only token")
    except ArchiveError:
        if _has_body(environ):
            abandon_body(environ)
        raise
    environ[RIGHTS] = StaticRights(scope, cast(str, name))  # a token found has its name
    if entry is not None:
        environ[gridmap.ENTRY] = entry
    return name


def _check_issued(
    issued: Optional[IssuedTokens],
    token: str,
    method: str,
    path: str,
    environ: WSGIEnvironment,
    rule: Optional[ScopeRule],
) -> str:
    """The name of a token issued here that grants ``method`` on ``path`` by ``rule``; 401 or 403 otherwise."""
    if issued is None:
        raise Unauthorized(
            "the bearer token is not valid here: this archive issues no tokens", token_given=True, detail="bad token"
        )
    try:
        grant = issued.verify(token)
    except TokenRejected as exc:
        message = f"the bearer token is not valid here: {exc.reason}"
        raise Unauthorized(message, token_given=True, detail="bad issued token") from None
    return _admit(grant, method, path, environ, rule, "issued")


def _check_wlcg(
    wlcg: WlcgTokens, token: str, method: str, path: str, environ: WSGIEnvironment, rule: Optional[ScopeRule]
) -> str:
    """The name of a WLCG token that grants ``method`` on ``path`` by ``rule``; 401, 403 or 503 otherwise."""
    try:
        grant = wlcg.verify(token)
    except TokenRejected as exc:
        message = f"the bearer token is not valid here: {exc.reason}"
        raise Unauthorized(message, token_given=True, detail="bad JWT") from None
    except KeysUnavailable as exc:
        raise IssuerUnavailable(
            "the token's issuer has not given its keys yet (it does not answer); try again later",
            retry_after=exc.retry_after,
            detail="issuer keys unavailable",
        ) from None
    return _admit(grant, method, path, environ, rule, "WLCG")


def _admit(grant: Grant, method: str, path: str, environ: WSGIEnvironment, rule: Optional[ScopeRule], kind: str) -> str:
    """The name of a verified token's ``grant`` when it allows ``method`` on ``path`` by ``rule``; 403
    otherwise.  ``kind``: "WLCG" or "issued", for the messages."""
    if rule is None:
        raise InsufficientScope(
            f"the {kind} token grants storage access, not this endpoint", detail=f"no {kind} scope here"
        )
    lacks = rule.permits(grant, method, path)
    if lacks is not None:
        what = describe(lacks)
        if not rule.anywhere:
            what += " for this path"
        elif STAT_RIGHT not in lacks:
            what += " scope"
        raise InsufficientScope(f"the token grants no {what}", detail=f"insufficient {kind} scope")
    environ[GRANT] = grant
    environ[RIGHTS] = grant
    return grant.name


def _has_body(environ: WSGIEnvironment) -> bool:
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    return chunked or environ.get("CONTENT_LENGTH", "") not in ("", "0")


def non_loopback(addresses: Iterable[Union[Tuple[str, int], str, int]]) -> List[str]:
    """The bind addresses (gunicorn's ``cfg.address``) that other hosts may reach, as text."""
    exposed = []
    for address in addresses:
        if not isinstance(address, tuple):
            continue  # a unix socket path (or an inherited fd): no network address to judge
        host, port = address[0], address[1]
        if not _is_loopback(host):
            exposed.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return exposed


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:  # a host name: loopback only when every address it names is
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    # the host of an IP sockaddr is text (typeshed also allows (int, bytes): IPv6 on a Python built without it)
    return bool(infos) and all(ipaddress.ip_address(cast(str, info[4][0]).split("%")[0]).is_loopback for info in infos)


class WarningLog(Protocol):
    """Where ``warn_if_open`` warns: gunicorn's logger (not a logging.Logger) or one of the logging module."""

    def warning(self, msg: str, *args: object) -> None: ...


def warn_if_open(config: Config, addresses: Iterable[Union[Tuple[str, int], str, int]], log: WarningLog) -> None:
    """Log one warning when the service listens beyond this host and asks for no token."""
    if config.auth_tokens_file or config.auth_jwt_issuers or config.auth_dn_header:
        return
    exposed = non_loopback(addresses)
    if exposed:
        log.warning(
            "listening on %s without authentication: anyone who can reach it can read, store and delete files "
            "(set [auth] tokens_file or PAI_AUTH_TOKENS_FILE)",
            ", ".join(exposed),
        )
