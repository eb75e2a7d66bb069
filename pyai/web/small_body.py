"""Small request bodies, read whole into memory without a thread waiting on the client.

PATCH's JSON, PROPFIND's XML and the Tape API's JSON documents are read here
and nowhere else.  They are received as an upload is (``RequestBody``: the
same direct paths and framing checks, the same deadlines, ``receive_timeout``
and ``min_body_rate``, the bytes counted in the request's record), into an
anonymous memory file instead of a stored one.  Like an upload, a body that
stops arriving parks in the worker's poller: ``read`` is a generator that
yields ``parking.Wait`` and returns the bytes (where nothing can park it, it
blocks instead, see ``parking.run_to_end``).

A body over its limit is 413: an announced length before a byte is read, a
chunked body as soon as it passes the limit.  Then, and on any failure part
way, the rest stays unread and the connection closes after the answer.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Callable, Generator

from pyai import serving as parking
from pyai.errors import PayloadTooLarge
from pyai.web.receive import RequestBody, abandon_body

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.config import Config

# environ key: the body ``keep`` left for a mounted WSGI app (the control plane) to parse
KEPT = "pyai.small_body"
# A mounted app's body reader (the gate's ``Route.reads``): a generator function of the environ
# that reads the request's body, yielding parking.Wait while the client is slow, and keeps it.
BodyReader = Callable[["WSGIEnvironment"], Generator[parking.Wait, None, None]]


def has_body(environ: WSGIEnvironment) -> bool:
    """Whether the request announces a body (a length above 0, or chunked)."""
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ


def read(environ: WSGIEnvironment, limit: int, settings: Config, what: str) -> Generator[parking.Wait, None, bytes]:
    """The request's body, at most ``limit`` bytes (``what`` names it in the 413), b"" when
    there is none; a generator of ``parking.Wait`` while the client is slow.

    ``settings``: the configuration whose ``receive_timeout`` and ``min_body_rate`` apply.
    """
    if not has_body(environ):
        return b""
    try:
        length = environ.get("CONTENT_LENGTH", "")
        if length and int(length) > limit:  # the server has validated it
            raise too_large(limit, what)
        try:
            body = RequestBody(environ, limit, settings.receive_timeout or None, min_rate=settings.min_body_rate)
        except PayloadTooLarge:
            raise too_large(limit, what) from None
        parking.send_continue(environ)
        with _MemoryFile() as memory:
            patience = parking.PATIENCE if environ.get(parking.CAN_PARK) and body.fileno() is not None else None
            try:
                while not body.receive(memory, patience):
                    yield parking.Wait(body.fileno(), body.deadline())
            except PayloadTooLarge:  # a chunked body past the limit
                raise too_large(limit, what) from None
            return memory.contents(body.received)
    except BaseException:
        abandon_body(environ)
        raise


def keep(environ: WSGIEnvironment, data: bytes) -> None:
    """Leave ``data``, the body ``read`` returned, for the app: as ``environ[KEPT]`` and as a
    ``wsgi.input`` that holds it whole (no longer chunked: its framing is gone)."""
    environ[KEPT] = data
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def kept(environ: WSGIEnvironment) -> bytes:
    """The body ``keep`` left (b"" when none was read)."""
    return environ.get(KEPT, b"")


def too_large(limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{what} may hold at most {limit} bytes", detail="body too large")


class _MemoryFile:
    """An anonymous file in memory (memfd): a descriptor the native receive paths write
    into as they write into a stored file, gone when closed."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("pyai-small-body", os.MFD_CLOEXEC)

    def fileno(self) -> int:
        return self.fd

    def write(self, data: bytes) -> None:
        """For the portable receive path (no descriptor-level receive under other servers)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def contents(self, size: int) -> bytes:
        return os.pread(self.fd, size, 0) if size else b""

    def __enter__(self) -> _MemoryFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)
