"""What the service answers with: status lines, JSON documents, and the one mapping
from an exception to its error answer.

An answer travels as ``(status, headers, body)``: an int, a dict, an iterable of
bytes.  Every failure, whoever raised it, becomes the original's JSON error
document through ``error_answer``; a client never sees a traceback or a server
path.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Callable, Dict, Generator, Iterable, Optional, Tuple

from werkzeug.exceptions import HTTPException

from pyai import __version__
from pyai.errors import (
    NO_SPACE,
    STORAGE_UNREACHABLE,
    TOO_LARGE,
    ArchiveError,
    BadFraming,
    BodyEnded,
    IncompleteBody,
    RangeNotSatisfiable,
    describe,
)

if TYPE_CHECKING:
    from pyai.backends.base import Backend
    from pyai.serving import Wait

log = logging.getLogger("pyai")

# An answer's header fields, name: value.
Headers = Dict[str, str]
# An answer: ``(status, headers, body)``.
Answer = Tuple[int, Headers, Iterable[bytes]]
# What a handler that may wait for its client returns: a generator of parking.Wait that
# returns its answer (see pyai.serving).
Waiting = Generator["Wait", None, Answer]
# A route's mapping from a failure to its answer: ``(exc, method, path, storage)`` (error_answer's).
ErrorAnswer = Callable[[Exception, str, str, Optional["Backend"]], Answer]

# The reason phrases pyai sends.  The status line spells them in capitals (as
# Flask always did), the JSON ``status`` key as written here (as the original did).
REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content", 207: "Multi-Status",
    304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 411: "Length Required", 412: "Precondition Failed",
    413: "Payload Too Large", 415: "Unsupported Media Type", 416: "Range Not Satisfiable", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable", 507: "Insufficient Storage",
}  # fmt: skip
# Where Flask's status line said it otherwise (the names before RFC 9110), it still does.
_LINE_PHRASES = {413: "Request Entity Too Large", 416: "Requested Range Not Satisfiable"}
STATUS_LINES = {code: f"{code} {_LINE_PHRASES.get(code, reason).upper()}" for code, reason in REASONS.items()}


def json_answer(status: int, document: object, headers: Optional[Headers] = None) -> Answer:
    """The answer carrying ``document`` as JSON."""
    body = json.dumps(document).encode()
    headers = headers or {}
    headers["Content-Type"] = "application/json"
    headers["Content-Length"] = str(len(body))
    return status, headers, [body]


def error_document(status: str, message: Optional[str], detail: str) -> Dict[str, Optional[str]]:
    """The original's error document: ``status`` as "404 Not Found", ``detail`` the short
    "request: what failed" text."""
    return {"status": status, "message": message, "traceback": detail, "version": __version__}


def error_answer(exc: Exception, method: str, path: str, storage: Optional[Backend] = None) -> Answer:
    """The answer to a request that failed with ``exc``.

    ``storage`` (the backend) names the storage in a 503 and gives its Retry-After.
    """
    what = f"{method} {path[:80]}"
    headers: Headers = {}
    message: Optional[str]  # an HTTPException's description may be None
    if isinstance(exc, ArchiveError):
        status, message, detail = exc.status, exc.message, f"{what}: {exc.detail}"
        if isinstance(exc, RangeNotSatisfiable):
            headers["Content-Range"] = f"bytes */{exc.size}"
        retry_after = getattr(exc, "retry_after", None)  # BackendUnavailable's and TooManyRequests'
        if retry_after:
            headers["Retry-After"] = str(int(retry_after))
        headers.update(exc.headers or {})
    elif isinstance(exc, HTTPException) and exc.code is not None:  # from Flask, in the control plane
        status, message, detail = exc.code, exc.description, f"{what}: {exc.name}"
    elif isinstance(exc, IncompleteBody):
        status, message, detail = 400, f"the body ended early: {exc}", f"{what}: incomplete body"
    elif isinstance(exc, BodyEnded):
        status, message, detail = (
            400,
            "the body ended early (the connection closed inside it)",
            f"{what}: incomplete body",
        )
    elif isinstance(exc, BadFraming):
        status, message, detail = 400, "the request body is not valid chunked encoding", f"{what}: bad body framing"
    elif isinstance(exc, TimeoutError):
        status, message, detail = 408, "the client stopped sending the body", f"{what}: receive timed out"
    elif isinstance(exc, OSError):
        status, message, detail = _storage_failure(exc, method, what, storage, headers)
    else:
        log.exception("%s failed", what)
        status, message, detail = 500, f"internal error during {method}", f"{what}: {type(exc).__name__}"
    document = error_document(f"{status} {REASONS.get(status, '')}".rstrip(), message, detail)
    return json_answer(status, document, headers)


def _storage_failure(
    exc: OSError, method: str, what: str, storage: Optional[Backend], headers: Headers
) -> Tuple[int, str, str]:
    """Status, message and detail of a failed storage call; its path is never shown."""
    reason = exc.strerror or "error"
    op = getattr(exc, "op", None) or method
    if exc.errno in NO_SPACE:
        status, message = 507, "the archive has no space left for this file"
    elif exc.errno in TOO_LARGE:
        status, message = 413, "the file is larger than the storage can hold"
    elif exc.errno in STORAGE_UNREACHABLE:
        status, message = 503, f"{getattr(storage, 'storage', 'the storage')} is unavailable ({op}: {reason})"
        retry_after = getattr(storage, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        log.warning("%s: storage unavailable: %s", what, describe(exc))
    else:
        status, message = 500, f"the storage failed during {op}: {reason}"
        log.error("%s failed: %s", what, describe(exc))
    return status, message, f"{what}: {op} failed: {reason}"
