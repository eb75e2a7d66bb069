"""Receiving a request body into a backend writer.

Under gunicorn, a body with a Content-Length is received straight from the
client's socket into the file by ``fileio.recv_to_file`` (C, GIL released),
after taking the bytes gunicorn already read ahead.  Everything else (chunked
bodies, TLS, other WSGI servers, writers without a descriptor) goes through the
portable ``wsgi.input`` loop.  Either way the digests asked for
(``algorithms``) are computed on the bytes as they pass: in the direct path C
hands each piece to hashlib before writing it (no splice then, see
``fileio.recv_to_file``), in the portable loop each chunk is hashed here.
"""

import io
import socket
import ssl

from . import digests, fileio
from .errors import IncompleteBody, LengthRequired, PayloadTooLarge, UnsupportedTransferCoding

CHUNK = 1024 * 1024
# environ key: the app closes the connection after this response (see app.closing_when_asked)
CLOSE_CONNECTION = "pyai.close_connection"
# The largest file offset (off_t): a longer body cannot be a file, whatever max_body_size says.
MAX_FILE_SIZE = 2**63 - 1

try:  # the read-ahead we must take over lives in these gunicorn objects
    from gunicorn.http.body import Body as _GunicornBody
    from gunicorn.http.body import LengthReader as _GunicornLengthReader
    from gunicorn.http.unreader import SocketUnreader as _GunicornSocketUnreader
except ImportError:  # pragma: no cover - another WSGI server
    _GunicornBody = _GunicornLengthReader = _GunicornSocketUnreader = None


class RequestBody:
    """The body of one PUT: its announced length (None when chunked) and where it comes from."""

    def __init__(self, environ, max_size=0, timeout=None, algorithms=(), min_rate=0):
        self.environ = environ
        self.max_size = max_size
        self.timeout = timeout
        self._hashers = digests.hashers(algorithms)
        codings = [c.strip().lower() for c in environ.get("HTTP_TRANSFER_ENCODING", "").split(",") if c.strip()]
        if codings and codings != ["chunked"]:
            # The server takes the chunked framing off and hands the rest over still encoded:
            # storing those bytes would store something other than the file.
            raise UnsupportedTransferCoding(
                "the only transfer coding accepted is chunked", detail=f"transfer coding {', '.join(codings)[:40]}"
            )
        chunked = bool(codings)
        length = environ.get("CONTENT_LENGTH", "")
        if chunked:
            self.length = None
        elif length:
            self.length = int(length)  # the server has validated it
        else:
            raise LengthRequired("PUT needs a Content-Length or a chunked body", detail="no Content-Length, not chunked")
        if self.length is not None and self.length > (max_size or MAX_FILE_SIZE):
            raise _too_large(max_size or MAX_FILE_SIZE)

    # TEMPORARY stand-in for the resumable receive being built on the receive branch
    received = 0

    def fileno(self):
        return None

    def deadline(self):
        return None

    def receive(self, writer, patience=None):
        self.received = self.copy_to(writer)
        return True

    def digests(self):
        """``{algorithm: digest bytes}`` of the bytes received so far."""
        return {name: hasher.digest() for name, hasher in self._hashers.items()}

    def _write(self, write, data):
        for hasher in self._hashers.values():
            hasher.update(data)
        write(data)

    def copy_to(self, writer):
        """Write the whole body into ``writer`` and return its size; raise IncompleteBody if short."""
        fd = writer.fileno()
        parts = self._gunicorn_parts() if fd is not None and self.length is not None else None
        if parts is not None:
            received = self._receive_direct(fd, *parts)
        else:
            received = self._receive_portable(writer)
        if self.length is not None and received != self.length:
            raise IncompleteBody(received, self.length)
        return received

    def _gunicorn_parts(self):
        body = self.environ.get("wsgi.input")
        sock = self.environ.get("gunicorn.socket")
        if _GunicornBody is None or not isinstance(body, _GunicornBody) or sock is None:
            return None
        reader = body.reader
        if not isinstance(reader, _GunicornLengthReader) or isinstance(sock, ssl.SSLSocket):
            return None
        if not isinstance(reader.unreader, _GunicornSocketUnreader) or not hasattr(body, "buf"):
            return None
        return body, reader, sock

    def _receive_direct(self, fd, body, reader, sock):
        # What the application layer already holds, then what gunicorn read ahead
        # (which may run past this body into a pipelined request: give that back).
        held = body.buf.getvalue()
        body.buf = io.BytesIO()
        unreader = reader.unreader
        ahead = unreader.buf.getvalue()
        unreader.buf = io.BytesIO()
        mine, theirs = ahead[: reader.length], ahead[reader.length :]
        if theirs:
            unreader.unread(theirs)
        reader.length -= len(mine)
        received = 0
        for data in (held, mine):
            if data:
                self._write(lambda piece: fileio.write_all(fd, piece), data)
                received += len(data)
        if reader.length:
            moved = fileio.recv_to_file(sock.fileno(), fd, reader.length, self.timeout, tuple(self._hashers.values()))
            reader.length -= moved
            received += moved
        return received

    def _receive_portable(self, writer):
        stream = self.environ["wsgi.input"]
        remaining = self.length
        received = 0
        with _socket_timeout(self.environ.get("gunicorn.socket"), self.timeout):
            while remaining is None or remaining > 0:
                data = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not data:
                    break
                received += len(data)
                if self.max_size and received > self.max_size:
                    raise _too_large(self.max_size)
                self._write(writer.write, data)
                if remaining is not None:
                    remaining -= len(data)
        return received


def abandon_body(environ):
    """The rest of this request's body stays unread (or its end is unknown): the
    connection must close after the response instead of serving another request."""
    environ[CLOSE_CONNECTION] = True
    stream = environ.get("wsgi.input")
    if hasattr(stream, "failed"):
        stream.failed = True  # gunicorn then never drains it for a next request


def _too_large(max_size):
    return PayloadTooLarge(f"the body is larger than this archive accepts ({max_size} bytes)", detail="body over max_body_size")


class _socket_timeout:
    """Bound each blocking read on gunicorn's socket, restoring its previous timeout after."""

    def __init__(self, sock, timeout):
        self.sock = sock if isinstance(sock, socket.socket) and timeout else None
        self.timeout = timeout

    def __enter__(self):
        if self.sock is not None:
            self.previous = self.sock.gettimeout()
            self.sock.settimeout(self.timeout)

    def __exit__(self, *exc_info):
        if self.sock is not None:
            self.sock.settimeout(self.previous)
