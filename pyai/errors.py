"""Exceptions of the archive, and the one place an errno becomes an exception.

Client mistakes and archive states (missing id, id taken, bad range, ...) are
``ArchiveError`` subclasses that carry their HTTP status; the web layer turns
any of them into the JSON error body.  Failures of the operating system stay
``OSError`` (with the PEP 3151 subclass picked from the errno) and are mapped
to a status by the web layer, which never shows their path to a client.
"""

import errno as _errno
import os
from typing import Dict, Optional


class ArchiveError(Exception):
    """A request the archive refuses; ``status`` is the HTTP status code, which a subclass
    names with its bases: ``class NotFound(ArchiveError, status=404)``."""

    status = 500
    headers: Optional[Dict[str, str]] = None  # extra answer headers (an Allow, an ETag), set by who raises

    def __init_subclass__(cls, status: Optional[int] = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status

    def __init__(self, message: str, *, detail: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        # detail: short "operation, id, cause" text for the JSON ``traceback`` key
        self.detail = detail or message


# One class per status a refusal carries: a table, written as classes so that
# callers can catch each kind.
class BadRequest(ArchiveError, status=400): ...


class Forbidden(ArchiveError, status=403): ...


class NotFound(ArchiveError, status=404): ...


class MethodNotAllowed(ArchiveError, status=405): ...


class Conflict(ArchiveError, status=409): ...


class PreconditionFailed(ArchiveError, status=412): ...


class LengthRequired(ArchiveError, status=411): ...


class PayloadTooLarge(ArchiveError, status=413): ...


class UnsupportedMediaType(ArchiveError, status=415): ...


class InsufficientStorage(ArchiveError, status=507):
    """An answer larger than the archive gives (a listing past ``[archive] max_listing``): RFC 4918 11.5."""


class NotImplementedMethod(ArchiveError, status=501):
    """A method pyai knows and does not do: HTTP third-party copy (COPY).  501, not 405: on a 405
    (or 403) davix stops with "Permission refused", on a 501 gfal2 tries its next copy mode.
    Also a token request to an archive that issues no tokens (no ``[auth] token_secret_file``)."""


class UnsupportedTransferCoding(ArchiveError, status=501):
    """A body in a transfer coding the archive cannot decode (gzip, ...): RFC 9112 says 501."""


class RangeNotSatisfiable(ArchiveError, status=416):
    def __init__(self, message: str, *, size: int, detail: Optional[str] = None) -> None:
        super().__init__(message, detail=detail)
        self.size = size


class BackendUnavailable(ArchiveError, status=503):
    """The storage system is down or too slow; the service itself is fine."""

    stage_wait: Optional[float] = None  # seconds the request waited for a stage from tape before this answer, if it did

    def __init__(self, message: str, *, retry_after: Optional[float] = None, detail: Optional[str] = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class ConfigError(Exception):
    """A configuration problem found at start-up; its text is one line for the operator."""


class BodyEnded(Exception):
    """The connection closed inside a chunked body."""


class BadFraming(Exception):
    """A chunked body's framing (or its trailer section) is not valid."""


class IncompleteBody(Exception):
    """The client sent fewer body bytes than it announced (or hung up)."""

    def __init__(self, received: int, expected: int) -> None:
        super().__init__(f"received {received} of {expected} bytes")
        self.received = received
        self.expected = expected


# errno values that mean "the storage is full" (HTTP 507)
NO_SPACE = frozenset({_errno.ENOSPC, _errno.EDQUOT})
# errno values that mean "the file is larger than the storage can hold" (HTTP 413)
TOO_LARGE = frozenset({_errno.EFBIG})
# errno values a storage call gets when its server is gone (HTTP 503): HPSS's
# core server going down between two pings, for one.  No client socket and no
# local file gives these.
STORAGE_UNREACHABLE = frozenset({_errno.ECONNREFUSED, _errno.EHOSTUNREACH, _errno.ENETUNREACH, _errno.EHOSTDOWN})


def os_error(err: int, op: str, path: Optional[str] = None) -> OSError:
    """Build the OSError for errno ``err`` (given positive or negative) raised by ``op``.

    Native code returns ``-errno``; this is the only function that turns such a
    code into an exception, so every implementation raises the same classes.
    ``strerror`` is the system's text alone; the operation travels as ``exc.op``
    (``describe`` puts the two together for logs and command lines).
    """
    err = abs(err)
    exc = OSError(err, os.strerror(err), path)
    exc.op = op  # type: ignore[attr-defined]  # OSError has no op; readers use getattr(exc, "op", None)
    return exc


def describe(exc: BaseException) -> str:
    """One line that says what failed: ``"<op>: <strerror>"`` for an OSError of ``os_error``,
    its ``strerror`` (or ``str(exc)``) for any other exception."""
    reason = getattr(exc, "strerror", None) or str(exc)
    op = getattr(exc, "op", None)
    return f"{op}: {reason}" if op else reason


class StoredNotDurable(ArchiveError, status=500):
    """The file is stored under the id, but the storage could not confirm it survives a crash
    (its directory fsync failed).  Not "nothing was stored": an identical retry answers 201."""
