"""Tokens the archive issues itself, for jobs that hold X.509 credentials (gfal2's and FTS's "macaroon requests").

A client that pyai knows (a static token, a WLCG token or a mapped client certificate's DN) asks
for a token of its own rights on a path, as gfal2 and FTS ask dCache, to hand to a job:

    POST <path>
    Content-Type: application/macaroon-request

    {"caveats": ["activity:DOWNLOAD,LIST"], "validity": "PT60M"}

and gets ``{"macaroon": "<token>", "expires_in": <seconds>}``.  The token then works as
``Authorization: Bearer <token>`` for those activities on that path and below it until it expires.
It is no macaroon: only pyai reads it, and a client treats it as opaque.  Its text is

    pyai1.<payload>.<signature>

``<payload>`` the base64url (unpadded) of the JSON object ``{"act": [storage activities],
"exp": <epoch seconds>, "path": "<absolute path>", "sub": "<the requester's token name>"}``,
``<signature>`` the base64url of the HMAC-SHA256, keyed with the secret of ``[auth]
token_secret_file``, of the text before it (``pyai1.<payload>``).  ``pyai1`` is the format's
version: another format gets another prefix.  Signatures are compared with
``hmac.compare_digest``; a token is never logged, nor put in an error.

What each of dCache's activities grants (``ACTIVITIES``), in the storage activities of
``pyai.web.scopes``, and what the requester must hold on the path to ask for it:

- DOWNLOAD: ``storage.read``; UPLOAD: ``storage.create`` (the requester: create or modify);
- DELETE, MANAGE, UPDATE_METADATA: ``storage.modify``; STAGE: ``storage.stage``;
- LIST, READ_METADATA: a stat only, which every issued token has on its path.

The caveats honoured: ``activity:`` (required; several are intersected), ``path:`` (narrows the
token to that path, which must be the request's path or below it; several narrow to the deepest,
which all must cover) and ``before:`` (an ISO 8601 time with its zone: the token expires by then).
Any other (``ip:``, ``root:``, ...) is refused (400) rather than ignored: a client that sends a
restriction must not get a token without it.  ``validity`` (an ISO 8601 duration, ``PT60M``,
``P1D``) is honoured up to ``MAX_VALIDITY`` (12 hours); ``expires_in`` says the lifetime given.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import hmac
import json
import math
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

from pyai.errors import BadRequest
from pyai.web.scopes import CREATE, MODIFY, READ, STAGE, STAT, STAT_RIGHT
from pyai.web.wlcg_tokens import STORAGE_ACTIVITIES, TokenRejected, covers, normalized

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

VERSION = "pyai1"
PREFIX = VERSION + "."
MEDIA_TYPE = "application/macaroon-request"
MIN_SECRET = 32  # bytes: HMAC-SHA256's key size
MAX_VALIDITY = 12 * 3600  # seconds: a longer validity is cut to it
MAX_REQUEST = 64 * 1024  # bytes of a token request's body (413 past it)
MAX_TOKEN_LENGTH = 16384  # a path is at most 2048 characters: its token is far shorter
# dCache's activity: (the storage activities it grants, those of which the requester needs one on the path).
ACTIVITIES: Mapping[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "DOWNLOAD": (READ, READ),
    "UPLOAD": (("storage.create",), CREATE),
    "DELETE": (MODIFY, MODIFY),
    "MANAGE": (MODIFY, MODIFY),
    "UPDATE_METADATA": (MODIFY, MODIFY),
    "LIST": ((), STAT),
    "READ_METADATA": ((), STAT),
    "STAGE": (STAGE, STAGE),
}
# The names of the clients that may ask (pyai.web.auth's static names, WLCG tokens' jwt:<host>:<sub>,
# client certificates' dn:<name>, pyai.web.gridmap).
SUBJECT = re.compile(
    r"(?:dn:)?(?:[A-Za-z0-9._-]{1,64}|sha256:[0-9a-f]{8})|jwt:[A-Za-z0-9._@-]{1,64}:[A-Za-z0-9._@-]{1,64}"
)
PART = re.compile(r"[A-Za-z0-9_-]+")
DURATION = re.compile(
    r"P(?:(?P<weeks>\d{1,9})W)?(?:(?P<days>\d{1,9})D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d{1,9})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,9}(?:[.,]\d{1,9})?)S)?)?",
    re.IGNORECASE,
)
DURATION_UNITS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
CAVEATS = ("activity", "path", "before")
FIELDS = frozenset({"caveats", "validity"})
SHOWN = 64  # characters of a client's own text an error quotes back


@dataclasses.dataclass(frozen=True)
class IssuedGrant:
    """What a token issued here grants: ``activities`` (storage activities) and a stat on ``path``
    (absolute, normalized) and below it, until ``expires`` (epoch seconds); ``subject``: the name of
    the token that asked for it."""

    subject: str
    path: str
    activities: FrozenSet[str]
    expires: int

    @property
    def scopes(self) -> Tuple[Tuple[str, str], ...]:
        """(activity, path) pairs, as a WLCG token's Grant has them; the stat right last."""
        return (*((activity, self.path) for activity in sorted(self.activities)), (STAT_RIGHT, self.path))

    def allows(self, activities: Iterable[str], path: str) -> bool:
        """True when one of ``activities`` (storage activities, or the stat right) is the token's,
        and its path covers ``path`` (``/foo`` covers ``/foo/bar``, never ``/foobar``)."""
        wanted = {activities} if isinstance(activities, str) else set(activities)
        granted = wanted & (self.activities | {STAT_RIGHT})
        return bool(granted) and covers(self.path, path)

    @property
    def name(self) -> str:
        """``issued:<the requester's name>``, for the transfer log."""
        return "issued:" + self.subject

    @property
    def owner(self) -> str:
        """Whom the Tape API's requests made with the token belong to: the tokens issued to its subject."""
        return "issued " + self.subject


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """A parsed token request: dCache's ``activities`` asked, the ``path`` the token is for (the
    request's, narrowed by ``path:`` caveats), the ``validity`` asked in seconds (not yet cut to
    MAX_VALIDITY), and the ``before:`` caveat's time (epoch seconds) or None."""

    activities: Tuple[str, ...]
    path: str
    validity: int
    before: Optional[float] = None

    def storage_activities(self) -> FrozenSet[str]:
        """The storage activities the token grants."""
        return frozenset(granted for name in self.activities for granted in ACTIVITIES[name][0])

    def beyond(self, allows: Callable[[Tuple[str, ...], str], bool]) -> Optional[str]:
        """The first activity asked that the requester does not hold on the path, by ``allows``
        (its rights' ``allows(activities, path)``); None when it holds every one."""
        for name in self.activities:
            if not allows(ACTIVITIES[name][1], self.path):
                return name
        return None


def is_token_request(environ: WSGIEnvironment) -> bool:
    """True for a request whose body's media type is ``application/macaroon-request``."""
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() == MEDIA_TYPE


def _bad(message: str, detail: str) -> BadRequest:
    return BadRequest(message, detail=detail)


def _shown(text: str) -> str:
    return repr(text if len(text) <= SHOWN else text[:SHOWN] + "...")


def parse_duration(text: str) -> int:
    """Whole seconds of an ISO 8601 duration: ``P[nW][nD][T[nH][nM][n[.n]S]]`` (any letter case;
    no years or months, whose length varies); ValueError for any other text."""
    match = DURATION.fullmatch(text)
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"{_shown(text)} is not an ISO 8601 duration such as PT60M, PT3600S or P1D")
    total = 0.0
    for unit, seconds in DURATION_UNITS.items():
        value = match.group(unit)
        if value:
            total += float(value.replace(",", ".")) * seconds
    return math.floor(total)


def _parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 date and time with its zone (``Z`` or ``+hh:mm``); ValueError otherwise."""
    zoned = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        moment = datetime.datetime.fromisoformat(zoned)
    except ValueError:
        raise ValueError(f"{_shown(text)} is not an ISO 8601 time such as 2030-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"{_shown(text)} names no time zone (end it with Z for UTC)")
    return moment.timestamp()


def parse_request(body: bytes, path: str) -> TokenRequest:
    """The TokenRequest of a request's body, for the request's decoded ``path``; BadRequest (400)
    saying what is wrong for a body that is not ``{"caveats": [...], "validity": "<duration>"}``
    with caveats this archive can honour."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise _bad(
            'a token request is JSON: {"caveats": ["activity:DOWNLOAD,LIST"], "validity": "PT60M"}',
            "token request is not JSON",
        ) from None
    if not isinstance(document, dict):
        raise _bad('a token request is a JSON object: {"caveats": [...], "validity": "..."}', "token request")
    unknown = sorted(set(document) - FIELDS)
    if unknown:
        raise _bad(f"a token request holds caveats and validity, not {_shown(unknown[0])}", "unknown field")
    caveats = document.get("caveats")
    if not isinstance(caveats, list) or not all(isinstance(caveat, str) for caveat in caveats):
        raise _bad('a token request needs "caveats", a list of strings such as "activity:DOWNLOAD,LIST"', "no caveats")
    validity = document.get("validity")
    if not isinstance(validity, str):
        raise _bad('a token request needs "validity", an ISO 8601 duration such as "PT60M"', "no validity")
    try:
        seconds = parse_duration(validity)
    except ValueError as exc:
        raise _bad(f"bad validity: {exc}", "bad validity") from None
    if seconds < 1:
        raise _bad("the validity must be at least a second", "bad validity")
    own = normalized(path)
    if own is None:  # the gate resolved the path: never
        raise _bad("the request's path cannot be scoped", "bad path")
    activities: Optional[List[str]] = None
    paths = [own]
    before: Optional[float] = None
    for caveat in caveats:
        kind, colon, value = caveat.partition(":")
        if not colon or kind not in CAVEATS:
            raise _bad(
                f"the caveat {_shown(caveat)} cannot be honoured here (only activity:, path: and before:)",
                "unsupported caveat",
            )
        if kind == "activity":
            named = _activities(value)
            activities = named if activities is None else [name for name in activities if name in named]
        elif kind == "path":
            narrowed = normalized(value)
            if narrowed is None:
                raise _bad(f"the caveat path:{_shown(value)} is not an absolute path without '..'", "bad path caveat")
            paths.append(narrowed)
        else:
            try:
                moment = _parse_time(value)
            except ValueError as exc:
                raise _bad(f"bad before: caveat: {exc}", "bad before caveat") from None
            before = moment if before is None else min(before, moment)
    if activities is None:
        raise _bad('a token request needs an activity: caveat, such as "activity:DOWNLOAD,LIST"', "no activity")
    if not activities:
        raise _bad("the activity: caveats have no activity in common", "no activity")
    deepest = max(paths, key=lambda candidate: 0 if candidate == "/" else candidate.count("/"))
    if not all(covers(candidate, deepest) for candidate in paths):
        raise _bad(
            "a path: caveat must name the request's path or one below it (and the path: caveats one line of paths)",
            "path caveat outside the request's path",
        )
    return TokenRequest(tuple(activities), deepest, seconds, before)


def _activities(value: str) -> List[str]:
    """dCache's activity names of an ``activity:`` caveat, each once, in the order given."""
    names: List[str] = []
    for item in value.split(","):
        name = item.strip()
        if name not in ACTIVITIES:
            known = ", ".join(ACTIVITIES)
            raise _bad(f"unknown activity {_shown(name)} (known: {known})", "unknown activity")
        if name not in names:
            names.append(name)
    return names


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(secret: bytes, signed: str) -> str:
    return _b64(hmac.new(secret, signed.encode("ascii"), hashlib.sha256).digest())


def mint(secret: bytes, grant: IssuedGrant) -> str:
    """The token of ``grant``, signed with ``secret``."""
    payload = {"act": sorted(grant.activities), "exp": grant.expires, "path": grant.path, "sub": grant.subject}
    signed = PREFIX + _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("ascii"))
    return signed + "." + _signature(secret, signed)


def verify(secret: bytes, token: str, now: float) -> IssuedGrant:
    """The IssuedGrant of a token signed with ``secret`` that has not expired at ``now`` (it is valid
    while ``now`` is before its ``exp``); TokenRejected (a reason naming nothing of it) otherwise."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRejected("the token is too long")
    signed, dot, signature = token.rpartition(".")
    payload = signed[len(PREFIX) :]
    if not signed.startswith(PREFIX) or not dot or not PART.fullmatch(payload) or not PART.fullmatch(signature):
        raise TokenRejected("malformed token")
    if not hmac.compare_digest(_signature(secret, signed).encode("ascii"), signature.encode("ascii")):
        raise TokenRejected("bad signature")
    grant = _grant(payload)
    if now >= grant.expires:
        raise TokenRejected("the token has expired")
    return grant


def _grant(payload: str) -> IssuedGrant:
    """The IssuedGrant a signed payload describes (TokenRejected should it not be one: it never is)."""
    try:
        claims: Dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise TokenRejected("malformed token") from None
    if not isinstance(claims, dict) or set(claims) != {"act", "exp", "path", "sub"}:
        raise TokenRejected("malformed token")
    subject, path, activities, expires = claims["sub"], claims["path"], claims["act"], claims["exp"]
    if (
        not isinstance(subject, str)
        or not SUBJECT.fullmatch(subject)
        or not isinstance(path, str)
        or normalized(path) != path
        or not isinstance(activities, list)
        or not all(isinstance(activity, str) and activity in STORAGE_ACTIVITIES for activity in activities)
        or not isinstance(expires, int)
        or isinstance(expires, bool)
    ):
        raise TokenRejected("malformed token")
    return IssuedGrant(subject, path, frozenset(activities), expires)


class IssuedTokens:
    """The tokens of one secret: ``issue`` makes them, ``verify`` reads them; ``clock`` gives the
    time (epoch seconds)."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < MIN_SECRET:
            raise ValueError(f"a token secret needs at least {MIN_SECRET} bytes")
        self._secret = secret
        self._clock = clock

    def __repr__(self) -> str:
        return "IssuedTokens(<secret>)"

    def issue(self, subject: str, request: TokenRequest) -> Tuple[str, int]:
        """(the token, its lifetime in seconds) for ``subject`` (the requester's token name) and
        ``request``: ``validity`` cut to MAX_VALIDITY, and to its ``before:``; BadRequest when that is past."""
        if not SUBJECT.fullmatch(subject):
            raise ValueError("not a token name")
        start = math.floor(self._clock())
        expires = start + min(request.validity, MAX_VALIDITY)
        if request.before is not None:
            expires = min(expires, math.floor(request.before))
            if expires <= start:
                raise _bad("the before: caveat is not in the future", "before caveat past")
        grant = IssuedGrant(subject, request.path, request.storage_activities(), expires)
        return mint(self._secret, grant), expires - start

    def verify(self, token: str) -> IssuedGrant:
        """The IssuedGrant of a token issued with this secret and not expired; TokenRejected otherwise."""
        return verify(self._secret, token, self._clock())
