"""Bearer tokens of the WLCG common JWT profile: verify one against its issuer's keys and say what it grants.

A ``WlcgTokens`` is built from the configured issuers ((issuer URL, base path) pairs), the
audiences this service answers to and a CA file ("" for the system's bundle).  ``verify`` gives
a ``Grant`` only when all of these hold, and raises ``TokenRejected`` (a short reason that
quotes nothing of the token) otherwise:

- the header's ``alg`` is RS256 or ES256 (never HS*, never ``none``), its ``kid`` names a key
  of the issuer's JWKS of that algorithm's type (RSA of at least 2048 bits for RS256, EC P-256
  for ES256: a key is never used with another algorithm), and PyJWT finds the signature good;
- ``iss`` is a configured issuer: the same string, or the same but for a trailing slash
  (OpenID discovery reads ``https://iam.example/`` and ``https://iam.example`` as one issuer,
  and issuers differ on which one their tokens carry);
- ``exp`` is there and not past, ``nbf`` and ``iat`` (when there) not in the future, each
  with ``leeway`` seconds (at most 60) for the clocks' skew;
- ``sub`` is a non-empty string; ``wlcg.ver`` a string of major version 1 ("1.0");
- ``aud`` is a string or a list of strings, a string read as space-separated names (Rucio
  joins bare host names so), and names a configured audience.  The profile's wildcard
  ``https://wlcg.cern.ch/jwt/v1/any`` counts only when it is configured itself;
- every storage scope of ``scope`` (``storage.read``, ``.create``, ``.modify``, ``.stage``,
  ``.poll``) has an absolute path without ``..``: one that has not rejects the whole token.
  Other scopes (``openid``, ``compute.*``, ...) and ``wlcg.groups`` grant nothing here.

The profile also requires ``iat`` and ``jti``; their absence is tolerated: nothing here uses
them (there is no replay cache), and refusing an otherwise valid token for them would only
lock out an issuer that leaves them out.  A token must name its key (``kid``), as every
WLCG issuer's do: trying every key of an issuer would multiply the work a forged token costs.

Keys: ``<iss>/.well-known/openid-configuration`` names ``jwks_uri``, which holds the JWKS.
Both are fetched over https only (the certificate checked against the CA file, no redirect
followed), each within ``timeout`` seconds (the connection is cut then) and at most
``max_document`` bytes, by one daemon thread per WlcgTokens: every issuer at ``start()``, again
every ``refresh_interval`` seconds (``retry_interval`` after a failure), and when a token names
a kid not seen yet, at most once per issuer every ``refetch_interval`` seconds.  A request
never fetches: it waits at most ``wait`` seconds for a fetch that is due.  A successful fetch
replaces the issuer's keys (a key the issuer dropped stops verifying); a failed one keeps them,
so an issuer that goes down keeps its tokens verifying, while the tokens of one whose keys
were never fetched get ``KeysUnavailable`` (503, with ``retry_after``).
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger("pyai")

ALGORITHMS = ("RS256", "ES256")
WILDCARD_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
STORAGE_ACTIVITIES = frozenset({"storage.read", "storage.create", "storage.modify", "storage.stage", "storage.poll"})
# The profile's required claims but iat and jti (see the module's docstring).
REQUIRED_CLAIMS = ("exp", "iss", "sub", "aud", "wlcg.ver")
MAX_LEEWAY = 60.0
# WLCG tokens are 1 to 2 KiB; the cap bounds what decoding an arbitrary header costs.
MAX_TOKEN_LENGTH = 16384
MIN_RSA_BITS = 2048
DISCOVERY = "/.well-known/openid-configuration"
# header.payload.signature in base64url; the signature may be empty (alg none) so that such a
# token is rejected as a JWT, with its reason, rather than looked up as a static token.
JWT_SYNTAX = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
WLCG_VERSION = re.compile(r"1(\.[0-9]+)*")
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")
NAME_PART = 64  # characters kept of the issuer's host and of the subject in a Grant's name
READ_SIZE = 65536


class TokenRejected(Exception):
    """The token is not valid here (401, ``error="invalid_token"``); ``reason`` is one short line naming no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(Exception):
    """No key of the token's issuer was ever fetched (503); ``retry_after``: seconds until it is tried again."""

    def __init__(self, issuer: str, retry_after: int) -> None:
        super().__init__(f"the keys of the token issuer {issuer} could not be fetched yet")
        self.issuer = issuer
        self.retry_after = retry_after


class _FetchFailed(Exception):
    """An issuer's keys could not be fetched; the text is one line for the log."""


def looks_like_jwt(token: str) -> bool:
    """True when ``token`` has the form of a JWT: three base64url parts separated by dots."""
    return JWT_SYNTAX.fullmatch(token) is not None


def _components(path: str) -> Optional[Tuple[str, ...]]:
    """The components of an absolute path, empty and ``.`` ones dropped; None for a relative path or one with ``..``."""
    if not path.startswith("/"):
        return None
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    return None if ".." in parts else parts


def _path(components: Tuple[str, ...]) -> str:
    return "/" + "/".join(components)


def normalized(path: str) -> Optional[str]:
    """``path`` without empty and ``.`` components (``/a//b/`` is ``/a/b``); None for a relative
    path or one with ``..``."""
    components = _components(path)
    return None if components is None else _path(components)


def covers(scope_path: str, path: str) -> bool:
    """True when a scope on ``scope_path`` covers ``path``: the same path or one beneath it,
    compared component by component (``/foo`` covers ``/foo/bar``, never ``/foobar``; ``/``
    covers all).  Either path relative or with ``..``: False."""
    covered, target = _components(scope_path), _components(path)
    return covered is not None and target is not None and target[: len(covered)] == covered


def _issuer_key(url: str) -> str:
    """What an issuer is looked up by: its URL without a trailing slash."""
    return url[:-1] if url.endswith("/") else url


def _safe(text: str) -> str:
    return NAME_UNSAFE.sub("_", text[:NAME_PART])


def _describe(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Grant:
    """What a verified token grants.  ``scopes``: (activity, absolute path) pairs, the issuer's
    base path already prepended; ``issuer``: the configured issuer URL; ``expires``: ``exp``."""

    subject: str
    issuer: str
    scopes: Tuple[Tuple[str, str], ...]
    expires: float

    def allows(self, activities: Iterable[str], path: str) -> bool:
        """True when a scope of one of ``activities`` covers ``path`` (the request's decoded absolute path).

        A scope covers its own path and everything beneath, compared component by component:
        ``/foo`` (or ``/foo/``) covers ``/foo`` and ``/foo/bar``, never ``/foobar``; ``/`` covers
        all.  A path with ``..`` is covered by nothing (the caller resolves paths first).
        """
        wanted = {activities} if isinstance(activities, str) else set(activities)
        target = _components(path)
        if target is None:
            return False
        for activity, scope_path in self.scopes:
            if activity in wanted:
                covered = _components(scope_path)
                if covered is not None and target[: len(covered)] == covered:
                    return True
        return False

    def any_storage_scope(self, path: str) -> bool:
        """True when some storage scope covers ``path``: what a stat needs (every storage scope allows one)."""
        return self.allows(STORAGE_ACTIVITIES, path)

    @property
    def name(self) -> str:
        """``jwt:<issuer host>:<sub>`` for the transfer log, each part cut to 64 characters of ``[A-Za-z0-9._@-]``
        (any other character becomes ``_``)."""
        host = urlsplit(self.issuer).hostname or "issuer"
        return f"jwt:{_safe(host)}:{_safe(self.subject)}"

    @property
    def owner(self) -> str:
        """Whom the Tape API's requests made with the token belong to: its issuer and subject."""
        return f"wlcg {self.issuer} {self.subject}"


class _Key(NamedTuple):
    algorithm: str  # the one algorithm the key verifies
    jwk: jwt.PyJWK


class _Issuer:
    """A configured issuer and its keys; the fields after ``discovery`` are guarded by WlcgTokens' lock."""

    def __init__(self, url: str, base: Tuple[str, ...]) -> None:
        self.url = url
        self.base = base
        self.discovery = _issuer_key(url) + DISCOVERY
        self.keys: Dict[str, _Key] = {}  # kid: key, replaced whole by each successful fetch
        self.fetched = False  # a fetch ever succeeded
        self.queued = True  # a fetch is due now (the first one, at start)
        self.fetching = False
        self.attempts = 0  # fetches ended, well or not: a waiting request watches it move
        self.next_fetch = 0.0  # when the thread fetches again on its own (time.monotonic)
        self.last_refetch = -math.inf  # when a request last asked for a fetch (an unknown kid)
        self.failing = False  # the last fetch failed (its failure was logged)


def _usable_keys(document: Dict[str, Any]) -> Dict[str, _Key]:
    """The keys of a JWKS that verify RS256 or ES256, by kid; _FetchFailed when there is none."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise _FetchFailed("the JWKS has no list of keys")
    usable: Dict[str, _Key] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        kty = entry.get("kty")
        algorithm = "RS256" if kty == "RSA" else "ES256" if kty == "EC" and entry.get("crv") == "P-256" else None
        if (
            not isinstance(kid, str)
            or not kid
            or kid in usable
            or algorithm is None
            or entry.get("alg", algorithm) != algorithm  # a key published for PS256, ES384, ... is not ours to use
            or entry.get("use", "sig") != "sig"
            or "d" in entry  # private material published by mistake: PyJWT would load a private key
        ):
            continue
        try:
            jwk = jwt.PyJWK(entry, algorithm=algorithm)
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        if isinstance(jwk.key, rsa.RSAPublicKey) and jwk.key.key_size < MIN_RSA_BITS:
            continue
        usable[kid] = _Key(algorithm, jwk)
    if not usable:
        raise _FetchFailed("the JWKS holds no usable RS256 or ES256 key with a kid")
    return usable


def _cut(connection: http.client.HTTPConnection, expired: Optional[threading.Event] = None) -> None:
    """End a fetch in progress: shut its socket down, so a blocked read returns at once."""
    if expired is not None:
        expired.set()
    sock = connection.sock
    if sock is not None:
        try:
            # the plain socket's shutdown: the SSL wrapper's would also drop its state under the reader's feet
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # closed already: nothing left to cut


class WlcgTokens:
    """The verifier: the configured issuers, their keys (fetched by a background thread) and the audiences."""

    def __init__(
        self,
        issuers: Sequence[Tuple[str, str]],
        audiences: Sequence[str],
        ca_file: str = "",
        *,
        leeway: float = MAX_LEEWAY,
        timeout: float = 5.0,
        wait: float = 3.0,
        max_document: int = 1 << 20,
        refresh_interval: float = 3600.0,
        refetch_interval: float = 30.0,
        retry_interval: float = 60.0,
    ) -> None:
        """ValueError (one line naming the value at fault) for a setting that cannot work.

        ``issuers``: (issuer URL, base path) pairs, each URL https; ``audiences``: the names a
        token's ``aud`` must include one of; ``ca_file``: the CA certificates (PEM) that the
        issuers' certificates are checked against, "" for the system's.  The rest, in seconds
        (bytes for ``max_document``), are described in the module's docstring.
        """
        if not issuers:
            raise ValueError("no token issuer is configured")
        self._issuers: Dict[str, _Issuer] = {}
        for url, base in issuers:
            _check_issuer_url(url)
            components = _components(base)
            if components is None:
                raise ValueError(f"the base path {base!r} of the issuer {url} is not an absolute path without '..'")
            if _issuer_key(url) in self._issuers:
                raise ValueError(f"the issuer {url} is configured twice")
            self._issuers[_issuer_key(url)] = _Issuer(url, components)
        if not audiences:
            raise ValueError("no token audience is configured")
        for audience in audiences:
            if not audience or any(character.isspace() for character in audience):
                raise ValueError(f"the audience {audience!r} is empty or holds a space")
        self._audiences: FrozenSet[str] = frozenset(audiences)
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"the leeway {leeway} is not between 0 and {MAX_LEEWAY:.0f} seconds")
        for name, value in (
            ("timeout", timeout),
            ("wait", wait),
            ("max_document", max_document),
            ("refresh_interval", refresh_interval),
            ("refetch_interval", refetch_interval),
            ("retry_interval", retry_interval),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value}")
        try:
            self._ssl = ssl.create_default_context(cafile=ca_file or None)
        except OSError as exc:  # a missing file, or one that holds no certificate (ssl.SSLError)
            raise ValueError(f"cannot load the CA file {ca_file!r}: {exc.strerror or exc}") from None
        self._leeway = leeway
        self._timeout = timeout
        self._wait = wait
        self._max_document = max_document
        self._refresh_interval = refresh_interval
        self._refetch_interval = refetch_interval
        self._retry_interval = retry_interval
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._connection: Optional[http.client.HTTPSConnection] = None  # the fetch in progress, for close()
        # A process forked after start() (gunicorn --preload builds the app before its workers)
        # has no thread and perhaps a lock its parent held: it gets its own of both.
        alive = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(alive))

    # -- the thread's life ---------------------------------------------------------------

    def start(self) -> None:
        """Start the thread that fetches the keys (every issuer's at once); a second call does nothing."""
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="wlcg-keys", daemon=True)
                self._thread.start()

    def _forked(self) -> None:
        """In a child process: a new lock and, when the parent's was started, a new thread."""
        started = self._thread is not None
        self._cond = threading.Condition()
        self._thread = None
        self._connection = None
        for issuer in self._issuers.values():
            if issuer.fetching:  # the parent's fetch does not go on here
                issuer.fetching, issuer.queued = False, True
        if started:
            self.start()

    def close(self) -> None:
        """Stop the thread, cutting a fetch in progress; the keys fetched so far keep verifying."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            connection, thread = self._connection, self._thread
        if connection is not None:
            _cut(connection)
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._timeout)

    # -- verification (request threads) --------------------------------------------------

    def verify(self, token: str) -> Grant:
        """The Grant of a valid token; TokenRejected for any other, KeysUnavailable when its issuer's
        keys were never fetched.  Waits at most ``wait`` seconds for a fetch, never fetches itself."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("the token is too long")
        if not looks_like_jwt(token):
            raise TokenRejected("not a JWT")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenRejected("malformed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRejected("algorithm not accepted (RS256 or ES256 only)")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token names no key (kid)")
        iss = unverified.get("iss")
        issuer = self._issuers.get(_issuer_key(iss)) if isinstance(iss, str) else None
        if issuer is None:
            raise TokenRejected("unknown issuer")
        key = self._key(issuer, kid)
        if key.algorithm != algorithm:
            raise TokenRejected("the algorithm does not fit the type of the key the token names")
        try:
            claims = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[key.algorithm],
                leeway=self._leeway,
                # aud is matched below (space-separated names); iss was matched to find the key
                options={"require": list(REQUIRED_CLAIMS), "verify_aud": False, "verify_iss": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad signature") from None
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            raise TokenRejected("malformed JWT") from None
        return self._grant(issuer, claims)

    def _key(self, issuer: _Issuer, kid: str) -> _Key:
        """The issuer's key ``kid``, waiting for a due fetch; a kid not seen yet makes one due (rate-limited)."""
        with self._cond:
            key = issuer.keys.get(kid)
            if key is not None:
                return key
            if self._thread is None:
                raise RuntimeError("WlcgTokens.start() was not called")
            if not (issuer.queued or issuer.fetching) and not self._closed:
                now = time.monotonic()
                if now - issuer.last_refetch >= self._refetch_interval:
                    issuer.last_refetch = now
                    issuer.queued = True
                    self._cond.notify_all()
            if issuer.queued or issuer.fetching:
                ended = issuer.attempts + 1  # one of queued and fetching at a time: the next fetch to end is it
                self._cond.wait_for(lambda: issuer.attempts >= ended or self._closed, timeout=self._wait)
                key = issuer.keys.get(kid)
                if key is not None:
                    return key
            if not issuer.fetched:
                raise KeysUnavailable(issuer.url, self._retry_after(issuer))
        raise TokenRejected("no key of its issuer has the token's kid")

    def _retry_after(self, issuer: _Issuer) -> int:
        """Seconds until the issuer's keys are next tried: by the thread, or by the next request allowed to ask."""
        now = time.monotonic()
        soonest = min(issuer.next_fetch, issuer.last_refetch + self._refetch_interval)
        if issuer.queued or issuer.fetching:
            soonest = min(soonest, now + self._timeout)
        return max(1, math.ceil(max(soonest - now, 0.0)))  # last_refetch may be -inf: never asked

    def _grant(self, issuer: _Issuer, claims: Dict[str, Any]) -> Grant:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("sub is not a non-empty string")
        for claim in ("exp", "nbf", "iat"):
            # PyJWT reads them with int(): a string of digits would pass
            if claim in claims and not _is_number(claims[claim]):
                raise TokenRejected(f"{claim} is not a number")
        if "iat" in claims and claims["iat"] > time.time() + self._leeway:
            # PyJWT checks this too, but only from 2.10 on
            raise TokenRejected("the token is not valid yet (nbf or iat in the future)")
        audience = claims["aud"]
        if isinstance(audience, str):
            named: List[str] = audience.split()
        elif isinstance(audience, list) and all(isinstance(name, str) for name in audience):
            named = audience
        else:
            raise TokenRejected("aud is neither a string nor a list of strings")
        if self._audiences.isdisjoint(named):
            raise TokenRejected("the token's audience (aud) is not this service")
        version = claims["wlcg.ver"]
        if not isinstance(version, str) or not WLCG_VERSION.fullmatch(version):
            raise TokenRejected("wlcg.ver is not a version 1.x")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenRejected("scope is not a string")
        scopes: List[Tuple[str, str]] = []
        for item in scope.split():
            activity, colon, path = item.partition(":")
            if activity not in STORAGE_ACTIVITIES:
                continue
            if not colon or not path:
                raise TokenRejected("a storage scope has no path")
            if not path.startswith("/"):
                raise TokenRejected("a storage scope has a relative path")
            components = _components(path)
            if components is None:
                raise TokenRejected("a storage scope's path has '..'")
            scopes.append((activity, _path(issuer.base + components)))
        return Grant(subject=subject, issuer=issuer.url, scopes=tuple(scopes), expires=float(claims["exp"]))

    # -- fetching (the thread) -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                issuer = self._due()
                while issuer is None and not self._closed:
                    nearest = min(candidate.next_fetch for candidate in self._issuers.values())
                    self._cond.wait(max(nearest - time.monotonic(), 0.0))
                    issuer = self._due()
                if self._closed or issuer is None:
                    return
                issuer.queued = False
                issuer.fetching = True
            keys: Optional[Dict[str, _Key]] = None
            try:
                keys = self._fetch_keys(issuer)
                failure = ""
            except _FetchFailed as exc:
                failure = str(exc)
            except Exception as exc:  # noqa: BLE001 - the thread must live on: other issuers, later fetches
                log.exception("fetching the token keys of %s", issuer.url)
                failure = f"{type(exc).__name__}: {exc}"
            self._record(issuer, keys, failure)

    def _due(self) -> Optional[_Issuer]:
        """The issuer to fetch now, one a request asked for first; None when none is due.  Under the lock."""
        now = time.monotonic()
        due = [issuer for issuer in self._issuers.values() if issuer.queued or issuer.next_fetch <= now]
        return min(due, key=lambda issuer: (not issuer.queued, issuer.next_fetch)) if due else None

    def _record(self, issuer: _Issuer, keys: Optional[Dict[str, _Key]], failure: str) -> None:
        with self._cond:
            now = time.monotonic()
            if keys is not None:
                if issuer.failing:
                    log.info("the token keys of %s are fetched again", issuer.url)
                issuer.keys = keys
                issuer.fetched = True
                issuer.failing = False
                issuer.next_fetch = now + self._refresh_interval
            else:
                # logged when the issuer starts failing, not on each retry of an issuer that stays down
                (log.debug if issuer.failing else log.warning)(
                    "cannot fetch the token keys of %s (%s): %s",
                    issuer.url,
                    f"its {len(issuer.keys)} known keys stay in use" if issuer.fetched else "its tokens get 503",
                    failure,
                )
                issuer.failing = True
                issuer.next_fetch = now + self._retry_interval
            issuer.fetching = False
            issuer.attempts += 1
            self._cond.notify_all()

    def _fetch_keys(self, issuer: _Issuer) -> Dict[str, _Key]:
        metadata = self._get_json(issuer.discovery)
        named = metadata.get("issuer")
        if not isinstance(named, str) or _issuer_key(named) != _issuer_key(issuer.url):
            raise _FetchFailed(f"{issuer.discovery} names another issuer")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme != "https":
            raise _FetchFailed(f"the jwks_uri of {issuer.discovery} is not an https URL")
        return _usable_keys(self._get_json(jwks_uri))

    def _get_json(self, url: str) -> Dict[str, Any]:
        """The JSON object at an https URL, fetched within ``timeout`` seconds; _FetchFailed otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise _FetchFailed(f"{url} is not an https URL")
        try:
            connection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self._timeout, context=self._ssl
            )
        except ValueError:  # a port that is no number
            raise _FetchFailed(f"{url} is not an https URL") from None
        expired = threading.Event()
        # the timeout bounds each socket operation; the watchdog bounds them all together
        watchdog = threading.Timer(self._timeout, _cut, (connection, expired))
        watchdog.daemon = True
        with self._cond:
            if self._closed:
                raise _FetchFailed("closed")
            self._connection = connection
        watchdog.start()
        body = bytearray()
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", target, headers={"Accept": "application/json"})
            response = connection.getresponse()
            if response.status != 200:
                raise _FetchFailed(f"{url} answered {response.status}")
            length = response.getheader("Content-Length", "")
            if length.isdigit() and int(length) > self._max_document:
                raise _FetchFailed(f"{url} is larger than {self._max_document} bytes")
            while True:
                chunk = response.read1(READ_SIZE)  # one receive at most: the watchdog can end the loop
                if not chunk:
                    break
                body += chunk
                if len(body) > self._max_document:
                    raise _FetchFailed(f"{url} is larger than {self._max_document} bytes")
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set():
                raise _FetchFailed(f"{url} took longer than {self._timeout} s") from None
            raise _FetchFailed(f"{url}: {_describe(exc)}") from None
        finally:
            watchdog.cancel()
            with self._cond:
                self._connection = None
            connection.close()
        if expired.is_set():  # cut at the deadline: what was read ends early
            raise _FetchFailed(f"{url} took longer than {self._timeout} s")
        try:
            document = json.loads(bytes(body))
        except (ValueError, RecursionError):
            raise _FetchFailed(f"{url} is not JSON") from None
        if not isinstance(document, dict):
            raise _FetchFailed(f"{url} is not a JSON object")
        return document


def _after_fork(alive: "weakref.ref[WlcgTokens]") -> None:
    tokens = alive()
    if tokens is not None:
        tokens._forked()


def _check_issuer_url(url: str) -> None:
    """ValueError unless ``url`` is https://host[:port][/path] (its keys are fetched from there)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError(f"the issuer {url} is not an https URL (its keys are fetched from it, over https only)")
    try:
        parts.port  # noqa: B018 - read for its ValueError on a port that is no number
    except ValueError:
        raise ValueError(f"the issuer {url} has a bad port") from None
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"the issuer {url} is not of the form https://host[:port][/path]")
