"""Conditional requests (RFC 9110 section 13): If-Match, If-None-Match,
If-Modified-Since and If-Unmodified-Since on ``/<id>``.

``outcome(environ, current)`` evaluates them in the order of RFC 9110 13.2.2
against the stored file (``current``: a FileStatus, or None when the id holds
none) and says what the request becomes: ``None`` (go on), ``NOT_MODIFIED``
(304, GET and HEAD only) or ``FAILED`` (412).  A request without any of the
four headers never gets here (``has_conditions``), so the common request pays
one dict lookup per header and nothing else.

The rules that are pyai's choices, all within the RFC:

- ``If-Modified-Since`` / ``If-Unmodified-Since`` are read only as HTTP-dates
  (the three forms of RFC 9110 5.6.7); anything else is ignored (13.1.3/13.1.4).
  A stored time is compared at the one-second resolution Last-Modified has.
- A malformed entity-tag list matches nothing.
- ``*`` matches when the id holds a file.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.backends.base import FileStatus

NOT_MODIFIED = 304
FAILED = 412

CONDITION_KEYS = frozenset(
    ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE")
)
_SAFE = frozenset({"GET", "HEAD"})
# One entity-tag of a list: optional W/, a quoted opaque tag (RFC 9110 8.8.3).
_ETAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')
_HTTP_DATE_FORMATS = (
    "%a, %d %b %Y %H:%M:%S GMT",  # IMF-fixdate
    "%A, %d-%b-%y %H:%M:%S GMT",  # obsolete RFC 850
    "%a %b %d %H:%M:%S %Y",  # obsolete asctime
)


def has_conditions(environ: WSGIEnvironment) -> bool:
    """Whether the request carries any of the four precondition headers."""
    return not CONDITION_KEYS.isdisjoint(environ)  # one C loop: every GET asks this


def outcome(environ: WSGIEnvironment, current: Optional[FileStatus]) -> Optional[int]:
    """None (no precondition stops the request), NOT_MODIFIED or FAILED.

    ``current`` is the stored file's FileStatus (``etag`` and ``mtime`` are
    read) or None when the id holds no file.
    """
    method = environ["REQUEST_METHOD"]
    if_match = environ.get("HTTP_IF_MATCH")
    if if_match is not None:
        if not _matches(if_match, current, strong=True):
            return FAILED
    else:
        since = _date(environ.get("HTTP_IF_UNMODIFIED_SINCE"))
        if since is not None and current is not None and _seconds(current.mtime) > since:
            return FAILED
    if_none_match = environ.get("HTTP_IF_NONE_MATCH")
    if if_none_match is not None:
        if _matches(if_none_match, current, strong=False):
            return NOT_MODIFIED if method in _SAFE else FAILED
    elif method in _SAFE:
        since = _date(environ.get("HTTP_IF_MODIFIED_SINCE"))
        if since is not None and current is not None and _seconds(current.mtime) <= since:
            return NOT_MODIFIED
    return None


def _matches(header: str, current: Optional[FileStatus], strong: bool) -> bool:
    """Whether the entity-tag list ``header`` names the stored file (RFC 9110 8.8.3.2)."""
    if current is None:
        return False  # nothing is stored: neither '*' nor any tag matches
    if header.strip() == "*":
        return True
    etag = current.etag
    if not etag:
        return False
    for weak, tag in _entity_tags(header):
        if weak and strong:
            continue  # a weak tag never matches strongly
        if tag == _opaque(etag, strong):
            return True
    return False


def _entity_tags(header: str) -> List[Tuple[bool, str]]:
    """The ``(weak, opaque-tag)`` pairs of an entity-tag list; [] when malformed."""
    tags: List[Tuple[bool, str]] = []
    at = 0
    while at < len(header):
        found = _ETAG.match(header, at)
        if found is None or found.end() == at:
            return []
        tags.append((bool(found.group(1)), found.group(2)))
        at = found.end()
    return tags


def _opaque(etag: str, strong: bool) -> Optional[str]:
    """The stored ETag's opaque tag (ours are strong; a weak one matches only weakly)."""
    if etag.startswith("W/"):
        return None if strong else etag[2:]
    return etag


def _date(header: Optional[str]) -> Optional[int]:
    """Epoch seconds of an HTTP-date header, or None (absent or not an HTTP-date: ignored)."""
    if header is None:
        return None
    text = header.strip()
    for fmt in _HTTP_DATE_FORMATS:
        try:
            return calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
    return None


def _seconds(mtime: float) -> int:
    """A stored time at Last-Modified's resolution (the whole second it falls in)."""
    return math.floor(mtime)
