"""What a WLCG token must grant for each request: the storage activities a method needs, on which path.

As the WLCG profile and the storage elements that follow it (StoRM, XRootD, dCache) map them:

- GET reads: ``storage.read``;
- HEAD, PROPFIND and OPTIONS are a stat, which any storage scope allows;
- PUT of a new file and MKCOL: ``storage.create`` or ``storage.modify``; replacing a stored file
  (``allow_overwrite``), DELETE, MOVE (both the file and its Destination) and PATCH:
  ``storage.modify``;
- COPY: a pull (``Source``) what a PUT needs, a push (``Destination``) what a GET needs;
- POST (Pacifica's stage) and the Tape API's stage, poll, cancel, release and delete:
  ``storage.stage``; archiveinfo: ``storage.stage``, ``storage.read`` or ``storage.poll``.

A scope covers the request's path when its path (below its issuer's base path) is ``/``, is the
path, or is followed by ``/`` in it (``pyai.web.wlcg_tokens.Grant.allows``).  The Tape API names
its paths in the request body: the gate checks that the token has the activity at all, and the
Tape API checks each path it reads (``require``).  A route without a rule (``/metrics``) takes no
WLCG token.

The same rules apply to the tokens this archive issues (``pyai.web.issued_tokens``): their
``IssuedGrant`` answers ``allows`` as a WLCG token's ``Grant`` does, and holds ``STAT_RIGHT`` on
its path besides its storage activities (dCache's LIST and READ_METADATA are that alone).  A
token request (``POST`` of ``application/macaroon-request``) takes ``DELEGATION``: any right on the
path lets it reach the handler, which decides which activities the new token may have.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Protocol, Tuple

from pyai.web.wlcg_tokens import STORAGE_ACTIVITIES

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

# The right to stat (HEAD, PROPFIND, OPTIONS) and nothing more: no WLCG scope names it (every
# storage scope holds it), a token issued here holds it on its path whatever its activities.
STAT_RIGHT = "stat"
READ = ("storage.read",)
STAT = (*sorted(STORAGE_ACTIVITIES), STAT_RIGHT)
CREATE = ("storage.create", "storage.modify")
MODIFY = ("storage.modify",)
STAGE = ("storage.stage",)
POLL = ("storage.stage", "storage.poll")
LOCALITY = ("storage.stage", "storage.read", "storage.poll")
GRANT = "pyai.grant"  # the environ key of a verified WLCG token's Grant (or of an issued token's IssuedGrant)


class Grant(Protocol):
    """What a verified token grants on paths: a WLCG token's (``wlcg_tokens.Grant``) or one issued
    here (``issued_tokens.IssuedGrant``)."""

    @property
    def scopes(self) -> Tuple[Tuple[str, str], ...]:
        """(activity, absolute path) pairs."""

    @property
    def name(self) -> str:
        """The token's name in the transfer log."""

    @property
    def owner(self) -> str:
        """Whom the Tape API's requests made with the token belong to."""

    def allows(self, activities: Iterable[str], path: str) -> bool:
        """True when one of ``activities`` is granted on a path that covers ``path``."""


@dataclasses.dataclass(frozen=True)
class ScopeRule:
    """The activities each method of a route needs.  ``anywhere``: on some path (the route's paths
    are in the request body, checked where they are read); else on the request's path."""

    needs: Mapping[str, Tuple[str, ...]]
    anywhere: bool = False

    def permits(self, grant: Grant, method: str, path: str) -> Optional[Tuple[str, ...]]:
        """None when ``grant`` allows ``method`` on ``path``, else the activities it lacks."""
        needed = self.needs.get(method, MODIFY)
        if self.anywhere:
            granted = any(activity in needed for activity, _ in grant.scopes)
        else:
            granted = grant.allows(needed, path)
        return None if granted else needed


DATA = ScopeRule(
    {
        "GET": READ,
        "HEAD": STAT,
        "PROPFIND": STAT,
        "OPTIONS": STAT,
        "PUT": CREATE,
        "MKCOL": CREATE,
        "DELETE": MODIFY,
        "MOVE": MODIFY,
        "PATCH": MODIFY,
        "POST": STAGE,
        "COPY": (*READ, *CREATE),  # a pull's PUT or a push's GET: the handler checks which (pyai.web.tpc)
    }
)
ROOT = ScopeRule({"PROPFIND": STAT, "OPTIONS": STAT})
DESCRIPTION = ScopeRule({"GET": STAT, "HEAD": STAT, "OPTIONS": STAT}, anywhere=True)  # /openapi.json
TAPE = ScopeRule({"GET": POLL, "HEAD": POLL, "POST": STAGE, "DELETE": STAGE, "OPTIONS": POLL}, anywhere=True)
ARCHIVEINFO = ScopeRule({"POST": LOCALITY, "OPTIONS": LOCALITY}, anywhere=True)
# A token request (POST application/macaroon-request): any right on the path reaches the
# handler, which grants at most the requester's own rights (pyai.web.issued_tokens).
DELEGATION = ScopeRule({"POST": STAT})


def describe(activities: Tuple[str, ...]) -> str:
    """How an error names the activities of a rule: "storage scope" for a stat, which any allows."""
    return "storage scope" if STAT_RIGHT in activities else " or ".join(activities)


def grant_of(environ: WSGIEnvironment) -> Optional[Grant]:
    """The request's verified WLCG token, None when it came with a static token or none."""
    return environ.get(GRANT)


def lacking(environ: WSGIEnvironment, activities: Tuple[str, ...], paths: Iterable[str]) -> Optional[str]:
    """The first of ``paths`` the request's WLCG token does not cover with one of ``activities``
    (None when all are covered, or the request has no WLCG token)."""
    grant = grant_of(environ)
    if grant is None:
        return None
    for path in paths:
        if not grant.allows(activities, path):
            return path
    return None
