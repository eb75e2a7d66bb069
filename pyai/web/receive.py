"""Receiving a request body into a backend writer, in one go or as it arrives.

Under pyai's server, a body with a Content-Length is received straight from the
client's socket into the file by ``pyai.native.recv_to_file`` (C, GIL
released), after taking the bytes the server read with the head (its
``pyai.serving.BodySource``); a chunked body is decoded from the socket into
the file by ``pyai.native.recv_chunked_to_file`` (C too), which first decodes
that read-ahead and gives back what it read past the body's end (a pipelined
request).  Everything else (TLS, other WSGI servers, writers without a
descriptor) goes through the portable ``wsgi.input`` loop.  A bad framing is
``BadFraming`` and a connection closed inside a chunked body ``BodyEnded``
on both paths, so both answer alike.
Either way the digests asked for (``algorithms``) are computed on the bytes as
they pass: with a Content-Length the bytes are spliced into the file and the
pipe is teed to a thread that hashes beside the receive (small bodies are
hashed in line, see ``recv_to_file``); a chunked body's data is given to the
digests by the decoder; in the portable loop each chunk is given here.  Past a
few MiB the digests copy what they are given and hash it on threads of their
own (``pyai.archive.beside``), so neither the receive nor the other digests
wait for the slowest.

The direct paths can be parked: ``receive(writer, patience)`` returns False
when the client has sent nothing for ``patience`` seconds, keeping all its
state, and the caller waits on ``fileno()`` until ``deadline()``.  Across
calls, and within them, two deadlines hold (both answered 408): no byte for
``timeout`` seconds, and, once ``timeout`` seconds have passed since the body
began, an average of at least ``min_rate`` bytes a second since then.  Disk
space is reserved as the bytes arrive (RESERVE_STEP ahead), never up front.
Whenever the writer has a descriptor, the file is written back behind the
receive (WRITEBACK_STEP at a time, on every path): the disk writes while the
bytes still arrive, and the writer's final fsync finds little left to flush.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence

from pyai import native as fileio
from pyai import serving
from pyai.archive import checksums as digests
from pyai.errors import (
    BadFraming,
    BodyEnded,
    IncompleteBody,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedTransferCoding,
    os_error,
)
from pyai.ops.record import record_of
from pyai.serving import CLOSE_CONNECTION

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.backends.base import Checksums
    from pyai.native._cimpl import ChunkedDecoder  # the stub of both implementations' decoder

__all__ = ["CLOSE_CONNECTION", "RequestBody", "abandon_body"]

CHUNK = 1024 * 1024
# The largest file offset (off_t): a longer body cannot be a file, whatever max_body_size says.
MAX_FILE_SIZE = 2**63 - 1
# Disk space is reserved this far ahead of the bytes received, one step each time
# they reach the reserved end: a client that stops sending holds at most this much
# space another upload could have used, and a fast upload asks the file system
# once per step (a 1 GiB PUT: 128 fallocate calls, no measurable cost).
RESERVE_STEP = 8 << 20
# Below this size reserving space costs a syscall and gains nothing.
RESERVE_FROM = 1 << 20
# Each time the bytes received complete a step this large, its writeback starts and
# the writeback of the step before is waited for (see native.write_behind): an upload
# holds at most about two steps of dirty page cache, and the disk writes beside the
# receive instead of in the final fsync.
WRITEBACK_STEP = 8 << 20
# The shortest budget of one C receive while the rate floor is checked: the
# floor is enforced within this much, and a client sending right at the floor
# costs a call per this much time, not a busy loop.
MIN_BUDGET = 0.25


class Sink(Protocol):
    """What a body is received into: a backend's Writer, or a small body's memory file."""

    def fileno(self) -> Optional[int]: ...  # None: the bytes go through ``write``
    def write(self, data: bytes) -> None: ...


class RequestBody:
    """The body of one PUT: its announced length (None when chunked), where it comes from, what came so far."""

    def __init__(
        self,
        environ: WSGIEnvironment,
        max_size: int = 0,
        timeout: Optional[float] = None,
        algorithms: Sequence[str] = (),
        *,
        min_rate: float = 0,
    ) -> None:
        self.environ = environ
        self.max_size = max_size
        self.timeout = timeout or None
        self.min_rate = min_rate or 0
        self._digesting = digests.digesting(algorithms)
        codings = [c.strip().lower() for c in environ.get("HTTP_TRANSFER_ENCODING", "").split(",") if c.strip()]
        if codings and codings != ["chunked"]:
            # The server takes the chunked framing off and hands the rest over still encoded:
            # storing those bytes would store something other than the file.
            raise UnsupportedTransferCoding(
                "the only transfer coding accepted is chunked", detail=f"transfer coding {', '.join(codings)[:40]}"
            )
        chunked = bool(codings)
        length = environ.get("CONTENT_LENGTH", "")
        self.length: Optional[int]
        if chunked:
            self.length = None
        elif length:
            self.length = int(length)  # the server has validated it
        else:
            raise LengthRequired(
                "PUT needs a Content-Length or a chunked body", detail="no Content-Length, not chunked"
            )
        if self.length is not None and self.length > (max_size or MAX_FILE_SIZE):
            raise _too_large(max_size or MAX_FILE_SIZE)
        self.received = 0
        record = record_of(environ)
        if record is not None:
            record.body = self  # its bytes received, counted here, are the request's
        self._source = self._direct_source()
        self._decoder: Optional[ChunkedDecoder] = None  # once the direct path has taken a chunked body over
        self._took_read_ahead = False
        self._started: Optional[float] = None  # monotonic time of the first receive
        # monotonic time of the last byte (the first receive until one comes); read once _started is set
        self._last = 0.0
        self._complete = False

    def digests(self) -> Checksums:
        """``{algorithm: digest bytes}`` of the bytes received so far."""
        return self._digesting.digests()

    def fileno(self) -> Optional[int]:
        """The client's socket to wait on between calls of ``receive``, or None when
        this body cannot be parked (TLS, not pyai's server, or a writer without a
        descriptor was given): then ``receive`` takes the whole body at once."""
        return self._source.sock.fileno() if self._source is not None else None

    def deadline(self) -> Optional[float]:
        """The monotonic time at which this body fails (408) if no byte comes before;
        None when there is none (no timeout) or before the first ``receive``."""
        if self._started is None or not self.timeout:
            return None
        limit = self._last + self.timeout
        if self.min_rate:
            limit = min(limit, self._started + self.timeout + self.received / self.min_rate)
        return limit

    def receive(self, writer: Sink, patience: Optional[float] = None) -> bool:
        """Move what arrives into ``writer``: True once the whole body is in, False when no
        byte came for ``patience`` seconds (call again when ``fileno()`` is readable).

        Raises IncompleteBody when the client closed before the announced length
        (a chunked body: BodyEnded; a bad framing: BadFraming), PayloadTooLarge
        past ``max_size``, TimeoutError (408) past ``deadline()``; the other
        errors are the writer's or the socket's.  Without ``patience``, or when
        the body cannot be parked, it returns True only (or raises).
        """
        if self._complete:
            return True
        if self._started is None:
            self._started = self._last = time.monotonic()
        fd = writer.fileno()
        if fd is None:
            self._source = None  # through writer.write(): no parking
        source = self._source
        if source is not None and fd is not None:
            source.reader = "app"
            direct = self._receive_direct if self.length is not None else self._receive_chunked
            if not direct(source, fd, patience):
                return False
        else:
            self._receive_portable(writer)
        self._complete = True
        if self.length is not None and self.received != self.length:
            raise IncompleteBody(self.received, self.length)
        return True

    def _write(self, write: Callable[[bytes], object], data: bytes) -> None:
        self._digesting.update(data)
        write(data)

    def _direct_source(self) -> Optional[serving.BodySource]:
        """pyai's server's BodySource of this body, when it can be received straight from the socket."""
        source = self.environ.get(serving.BODY)
        if source is None or isinstance(source.sock, ssl.SSLSocket) or source.reader is not None:
            return None
        return source

    def _take_read_ahead(self, source: serving.BodySource, fd: int) -> None:
        # The body's bytes the server read with the head.
        data = source.take_ahead()
        if data:
            self._write(lambda piece: fileio.write_all(fd, piece), data)
            self.received += len(data)
            self._last = time.monotonic()
        self._took_read_ahead = True

    def _receive_direct(self, source: serving.BodySource, fd: int, patience: Optional[float]) -> bool:
        """Receive until the body is in or the peer closed (True), or until ``patience`` ran out (False)."""
        if not self._took_read_ahead:
            self._take_read_ahead(source, fd)
        hashers = self._digesting.as_hashers()
        reserve = RESERVE_STEP if self.length is not None and self.length >= RESERVE_FROM else 0
        sock = source.sock
        while source.length:
            now = self._check_deadline()
            wanted = source.length
            try:
                moved = self._recv(
                    fileio.recv_to_file, sock.fileno(), fd, wanted, hashers, patience, now, reserve=reserve
                )
            except OSError as exc:
                self._moved(source, getattr(exc, "characters_written", 0), getattr(exc, "idle", 0.0))
                if not isinstance(exc, BlockingIOError) or not hasattr(exc, "idle"):
                    raise
                if self._patience_ran_out(exc.idle, now, patience):
                    return False  # parked: the state is all kept
                continue  # the budget ran out: the rate floor is checked above
            self._moved(source, moved, 0.0)
            if moved < wanted:
                break  # the peer closed: the body is short
        return True

    def _receive_chunked(self, source: serving.BodySource, fd: int, patience: Optional[float]) -> bool:
        """Decode a chunked body until it is in (True; a short one raises), or until ``patience`` ran out (False)."""
        sock = source.sock
        if self._decoder is None:
            self._decoder = fileio.ChunkedDecoder(max_line=source.max_line, max_trailer=source.max_trailer)
            self._decoder.feed(source.take_ahead())  # read with the head: the body's first bytes
        decoder = self._decoder
        hashers = self._digesting.as_hashers()
        while not decoder.complete:
            now = self._check_deadline()
            try:
                moved = self._recv(
                    fileio.recv_chunked_to_file,
                    sock.fileno(),
                    fd,
                    decoder,
                    hashers,
                    patience,
                    now,
                    reserve=RESERVE_STEP,
                    max_size=self.max_size or MAX_FILE_SIZE,
                )
            except OSError as exc:
                self.received += getattr(exc, "characters_written", 0)
                if hasattr(exc, "idle"):  # framing bytes are progress too
                    self._last = max(self._last, time.monotonic() - exc.idle)
                if exc.errno == errno.EFBIG and decoder.phase == "failed":  # over max_size, not the storage's EFBIG
                    raise _too_large(self.max_size or MAX_FILE_SIZE) from None
                if exc.errno == errno.EPROTO:
                    raise BadFraming("invalid chunked framing") from None
                if not isinstance(exc, BlockingIOError) or not hasattr(exc, "idle"):
                    raise
                if self._patience_ran_out(exc.idle, now, patience):
                    return False  # parked: the decoder keeps its place
                continue  # the budget ran out: the rate floor is checked above
            self.received += moved
            if not decoder.complete:
                # The peer closed inside the body; after a chunk's data or in the trailers
                # the framing is what is missing (gunicorn's ChunkMissingTerminator).
                if decoder.phase in ("crlf", "trailer"):
                    raise BadFraming("a chunk or the trailer section is not terminated")
                raise BodyEnded("the connection closed inside the chunked body")
        if decoder.leftover:
            source.give_back(decoder.leftover)  # the next request's first bytes
        serving.check_trailers(decoder.trailers)
        source.complete = True
        return True

    def _recv(
        self,
        recv: Callable[..., int],
        sock_fd: int,
        fd: int,
        what: object,
        hashers: Sequence[object],
        patience: Optional[float],
        now: float,
        **limits: int,
    ) -> int:
        """One C receive from the socket into ``fd``: ``recv`` is recv_to_file (``what``: the bytes
        wanted) or recv_chunked_to_file (``what``: the decoder), both paced alike.  It comes back
        after ``patience`` without a byte, or in time to check the rate floor; ``limits``: the
        space to reserve ahead, and a chunked body's largest size."""
        budget = None
        # come back in time to check the rate floor (_started: set by the first receive, before this)
        if self.min_rate and self.timeout and self._started is not None:
            budget = max(MIN_BUDGET, self._started + self.timeout + self.received / self.min_rate - now)
        return recv(
            sock_fd,
            fd,
            what,
            self.timeout,
            hashers,
            patience,
            budget=budget,
            waited=now - self._last,
            writeback=WRITEBACK_STEP,
            **limits,
        )

    def _patience_ran_out(self, idle: float, now: float, patience: Optional[float]) -> bool:
        """After a receive came back for want of bytes (none for ``idle`` seconds): 408 when the
        deadline has passed, else whether to park (``patience`` ran out) or go on (the budget did)."""
        self._check_deadline()
        return patience is not None and min(idle, time.monotonic() - now) >= patience - 0.002

    def _moved(self, source: serving.BodySource, count: int, idle: float) -> None:
        if count:
            source.consumed(count)
            self.received += count
            self._last = time.monotonic() - idle

    def _check_deadline(self) -> float:
        """The monotonic time now, or TimeoutError when the deadline has passed."""
        now = time.monotonic()
        limit = self.deadline()
        if limit is not None and now >= limit:
            raise os_error(errno.ETIMEDOUT, "receive")
        return now

    def _receive_portable(self, writer: Sink) -> None:
        # Blocking reads: each socket read waits at most until the deadline (the
        # socket's timeout), and the deadline is checked between reads.
        stream = self.environ["wsgi.input"]
        remaining = None if self.length is None else self.length - self.received
        source = self.environ.get(serving.BODY)
        sock = source.sock if source is not None else None
        behind = writer.fileno()  # the descriptor to write back behind, None when there is none
        with _socket_timeout(sock, self.timeout) as timed:
            while remaining is None or remaining > 0:
                now = self._check_deadline()
                timed.set(self.deadline(), now)
                data = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not data:
                    break
                self.received += len(data)
                self._last = time.monotonic()
                if self.max_size and self.received > self.max_size:
                    raise _too_large(self.max_size)
                self._write(writer.write, data)
                if behind is not None and not fileio.write_behind(
                    behind, self.received - len(data), self.received, WRITEBACK_STEP
                ):
                    behind = None  # this file cannot be written back so: just receive it
                if remaining is not None:
                    remaining -= len(data)


def abandon_body(environ: WSGIEnvironment) -> None:
    """The rest of this request's body stays unread (or its end is unknown): the
    connection must close after the response instead of serving another request."""
    environ[CLOSE_CONNECTION] = True
    stream = environ.get("wsgi.input")
    if stream is not None and hasattr(stream, "failed"):
        stream.failed = True  # a server that drains bodies then leaves it


def _too_large(max_size: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body is larger than this archive accepts ({max_size} bytes)", detail="body over max_body_size"
    )


class _socket_timeout:
    """Bound each blocking read on the client's socket, restoring its previous timeout after."""

    def __init__(self, sock: Optional[socket.socket], timeout: Optional[float]) -> None:
        self.sock = sock if isinstance(sock, socket.socket) and timeout else None
        self.timeout = timeout

    def set(self, deadline: Optional[float], now: float) -> None:
        """Let the next reads wait no longer than until ``deadline`` (the progress timeout at most)."""
        if self.sock is not None and self.timeout and deadline is not None:  # a sock is kept only with a timeout
            self.sock.settimeout(max(0.01, min(self.timeout, deadline - now)))

    def __enter__(self) -> _socket_timeout:
        if self.sock is not None:
            self.previous = self.sock.gettimeout()
            self.sock.settimeout(self.timeout)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.previous)
