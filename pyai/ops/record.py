"""What one request did: the record the worker keeps for each, for the metrics and the transfer log.

The worker puts a ``Record`` in every request's environ (under ``RECORD``) before
the app runs.  The gate, the data plane and the receive path fill in what only
they know (the id, the token's name, the request body, the digest, the medium,
the stage wait); the exchange notes when the first byte of the answer went out.
When the exchange ends (answered, abandoned, or its client gone) the worker
calls ``finished`` once, which hands the record to the metrics and the
transfer log.  Nothing here may raise into the worker: a failure to observe a
request must never fail the request.
"""

import time
from typing import TYPE_CHECKING, Optional, Protocol

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

RECORD = "pyai.record"


class Body(Protocol):
    """What a record reads of its request's body (``pyai.web.receive.RequestBody``, a layer above)."""

    @property
    def received(self) -> int: ...  # the body bytes received so far


class Record:
    """One request, as it happened.  Times: ``time.monotonic()``, except ``wall`` (``time.time()``)."""

    __slots__ = (
        "wall",
        "started",
        "first_byte",
        "method",
        "path",
        "forwarded_for",
        "ident",
        "token",
        "body",
        "digest",
        "medium",
        "stage_wait",
        "kind",
    )

    def __init__(self, method: str, path: Optional[str] = None, forwarded_for: Optional[str] = None) -> None:
        self.wall = time.time()
        self.started = time.monotonic()
        self.first_byte: Optional[float] = None  # when the first byte of the answer was sent
        self.method = method
        self.path = path  # the request path as sent (no query)
        self.forwarded_for = forwarded_for  # the X-Forwarded-For header, as sent (None without one)
        self.ident: Optional[str] = None  # the id the request named (str), None for a control-plane path
        self.token: Optional[str] = None  # the name of the token that authenticated it (never the token)
        # the RequestBody receiving its body (an upload or a small body), which counts the bytes
        self.body: Optional[Body] = None
        self.digest: Optional[str] = None  # "sha256:<hex>": the digest stored (PUT) or sent (GET, HEAD)
        self.medium: Optional[str] = None  # where the file was: "disk", "tape", ... (the X-Pacifica-Status word)
        self.stage_wait: Optional[float] = None  # seconds waited for a stage from tape
        self.kind: Optional[str] = None  # "upload" or "download" while it is counted in progress (see metrics)

    def bytes_received(self) -> int:
        body = self.body
        return body.received if body is not None else 0

    def sent_first_byte(self) -> None:
        if self.first_byte is None:
            self.first_byte = time.monotonic()


def record_of(environ: "WSGIEnvironment") -> Optional[Record]:
    """The request's Record, or None when it runs outside pyai's worker (an in-process test client)."""
    return environ.get(RECORD)
