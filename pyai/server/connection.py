"""One client connection of pyai's worker, and the request it is answering.

Sockets stay blocking, as a WSGI app reading the body expects; the worker's
reads and sends say MSG_DONTWAIT instead, and only sendfile, which has no
such flag, switches the socket to non-blocking while a file goes out.

A ``Connection`` collects a request head without blocking (``read_head``):
the worker calls it whenever the socket is readable, and only a complete head
(with its body, when that is small and not a PUT's) is answered.  The bytes
read past the head stay in the same buffer: they are the body's first bytes
(the request's ``pyai.serving.BodySource`` hands them to whoever receives the
body) and, after them, the next request's.  An ``Exchange`` is one request
and its answer; the answer is written without blocking (``Exchange.pump``):
the head and a small body from memory in one ``send``, a file with
sendfile(2), and whatever the client's socket cannot take now waits in the
exchange (bytes, or the file, offset and length left) until the socket is
writable again.  Nothing here ever waits for a client.
"""

import os
import re
import socket
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, List, Mapping, Optional, Union, cast, final

from pyai import serving
from pyai.ops import observe
from pyai.server import http2
from pyai.server.wsgi import BodyItem, FileWrapper, Response, fileno_of

if TYPE_CHECKING:
    from wsgiref.types import WSGIEnvironment

    from pyai.ops.record import Record
    from pyai.server.head import Head
    from pyai.server.worker import PyaiWorker

# Outcomes of a step, for the worker.
READ_HEAD = "read-head"  # wait for (the rest of) the next request head
PARK_READ = "park-read"  # the answer waits for request bytes (a parked upload)
PARK_WRITE = "park-write"  # the answer waits for the client to take bytes
CLOSE = "close"  # done: half-close, let the client read the answer, then close
DROP = "drop"  # close now (the client is gone or the connection is unusable)

# Head states (read_head).  HTTP2: the connection opened with the HTTP/2 client preface.
COMPLETE, PARTIAL, OVERLONG, EOF, HTTP2 = "complete", "partial", "overlong", "eof", "http2"

RECV_SIZE = 65536
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_IO = 0x7FFFF000
# Bodies of other requests than PUT up to this size (a PATCH body is at most
# 64 KiB) are read with their head, so the request is answered at once.
SMALL_BODY = 64 * 1024
# socket's flags are enum members: or-ing them per send runs enum code, so the ints are kept
_SEND = int(socket.MSG_DONTWAIT)
_SEND_MORE = int(socket.MSG_DONTWAIT | socket.MSG_MORE)
_RECV = int(socket.MSG_DONTWAIT)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]{1,12})[ \t]*\r\n", re.IGNORECASE)
# A socket address as accept() and getsockname() give it: (host, port, ...) for IP, a path for a Unix socket.
Address = Any


@final  # the worker tells a connection from a listener by its exact type
class Connection:
    """A client socket, its head buffer and its exchange."""

    __slots__ = (
        "sock", "fd", "client", "server", "head_max", "head", "head_started", "exchange", "deadline", "closed",
        "served", "drained", "armed", "polled", "events", "closing", "environ",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, client: Address, server: Address, head_max: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.client = client
        self.server = server
        self.head_max = head_max
        self.head = bytearray()  # the next head; after it, the body's first bytes and any next request's
        self.head_started: Optional[float] = None  # monotonic time of the head's first byte
        self.exchange: Optional[Exchange] = None
        self.deadline: Optional[float] = None  # when the worker gives up waiting (monotonic)
        self.closed = False
        self.served = 0  # requests answered on it (a new connection waits head_timeout, a kept-alive one keepalive)
        self.drained = 0  # bytes discarded while the client closes (see PyaiWorker._close_gracefully)
        self.armed = False  # waiting in the poller (no thread has it)
        self.polled: Optional[int] = None  # the descriptor registered for it in the poller
        self.events = 0  # what it waits for there (to re-arm it with, see PyaiWorker._hand_back)
        self.closing = False  # half-closed: waiting for the client to close
        self.environ: Optional["WSGIEnvironment"] = None  # the WSGI keys its requests share (made with the first)

    def read_head(self) -> str:
        """Take what the socket holds without waiting; COMPLETE, PARTIAL, OVERLONG, EOF or HTTP2."""
        while True:
            state = self.head_state()
            if state != PARTIAL:
                return state
            try:
                data = self.sock.recv(RECV_SIZE, _RECV)
            except (BlockingIOError, InterruptedError):
                return PARTIAL
            except OSError:
                return EOF
            if not data:
                return EOF
            if not self.head:
                self.head_started = time.monotonic()
            self.head += data

    def head_state(self) -> str:
        head = self.head
        # Empty lines before a request line are ignored (RFC 9112 2.2).
        while head[:2] == b"\r\n":
            del head[:2]
        if not self.served and head and http2.may_be_preface(head):
            # checked before the blank line: the preface has one after "PRI * HTTP/2.0"
            return HTTP2 if len(head) >= len(http2.PREFACE) else PARTIAL
        end = _head_end(head)
        if end >= 0:
            if end > self.head_max:
                return OVERLONG
            return COMPLETE if self._small_body_in(end) else PARTIAL
        if len(head) > self.head_max:
            return OVERLONG
        return PARTIAL

    def take_head(self) -> bytes:
        """The complete head at the start of the buffer (through its blank line), removed from it."""
        end = _head_end(self.head)
        data = bytes(self.head[:end])
        del self.head[:end]
        self.head_started = None  # what follows is the body's, or the next head's (see PyaiWorker._after)
        return data

    def _small_body_in(self, body_start: int) -> bool:
        """False while a small body announced by a request other than GET, HEAD or PUT is
        still on its way: it is read here with the head, so the thread that answers
        never waits for it (PUT bodies are parked by the app instead)."""
        if self.head.startswith((b"GET ", b"HEAD ", b"PUT ")):
            return True
        match = _CONTENT_LENGTH.search(self.head, 0, body_start)
        if match is None:
            return True
        length = int(match.group(1))
        return length > SMALL_BODY or len(self.head) - body_start >= length

    def refuse_http2(self) -> None:
        """Tell an HTTP/2 client that HTTP/1.1 is required, in HTTP/2 (``pyai.server.http2``); best
        effort, without waiting: the connection closes next."""
        try:
            self.sock.send(http2.REFUSAL, socket.MSG_DONTWAIT)
        except OSError:
            pass


class Exchange:
    """One request and its answer, written without blocking.

    The Response formats its head and body bytes into ``out``; ``pump`` moves
    them, then a file range with sendfile, then asks the response iterable for
    more.
    """

    __slots__ = (
        "conn", "head", "source", "resp", "environ", "respiter", "iterator", "file", "out", "wait", "send_timeout",
        "send_deadline", "started", "record", "done", "continue_pending",
    )  # fmt: skip

    def __init__(
        self, conn: Connection, head: "Head", source: Optional[serving.BodySource], send_timeout: Optional[float]
    ) -> None:
        self.conn = conn
        self.head = head  # the parsed pyai.server.head.Head
        self.source = source  # the body's pyai.serving.BodySource (None: a plain request, without one)
        self.resp: Optional[Response] = None
        self.environ: Optional[Mapping[str, Any]] = None
        self.respiter: Optional[Iterable[BodyItem]] = None
        self.iterator: Optional[Iterator[BodyItem]] = None  # the response iterable, while it has items to give
        self.file: Optional[List[int]] = None  # [fd, offset, left] of a body sent with sendfile
        self.out = bytearray()
        self.wait: Optional[serving.Wait] = None  # the serving.Wait the iterator yielded
        self.send_timeout = send_timeout or None
        self.send_deadline: Optional[float] = None
        self.started = time.monotonic()
        self.record: Optional["Record"] = None  # the request's pyai.ops.record.Record, once the app is called
        self.done = False
        # gunicorn would send 100 Continue before the app could refuse; pyai sends it when the app reads
        self.continue_pending = head.expect and head.version == "1.1"

    def send_continue(self) -> None:
        """Send 100 Continue now (the app has decided to read the body); blocking, it is 25 bytes."""
        # the worker sets resp before the app runs, and only the app calls this
        if self.continue_pending and not cast(Response, self.resp).headers_sent:
            self.continue_pending = False
            self.conn.sock.sendall(CONTINUE)

    def start_body(self, respiter: Iterable[BodyItem], sendfile_allowed: bool) -> None:
        """Choose how the body goes out: sendfile for a file of known length, else the iterable."""
        self.respiter = respiter
        resp = cast(Response, self.resp)  # set before the app ran (PyaiWorker._answer, _answer_plain)
        if type(respiter) is FileWrapper and sendfile_allowed and resp.response_length is not None:
            where = fileno_of(respiter.filelike)
            if where is not None:
                resp.send_headers()
                if not resp.omits_body:
                    self.file = [where[0], where[1], resp.response_length]
                    resp.sent += resp.response_length
                return
        self.iterator = iter(respiter)

    def pump(self) -> Optional[str]:
        """Move the answer on as far as the socket takes it: PARK_WRITE, PARK_READ, or None when it is all sent."""
        sock = self.conn.sock
        while True:
            if self.out:
                # a file follows: the head waits in the kernel for its first bytes (one segment)
                flags = _SEND_MORE if self.file is not None else _SEND
                try:
                    sent = sock.send(self.out, flags)
                except (BlockingIOError, InterruptedError):
                    return self._blocked()
                del self.out[:sent]
                if self.record is not None and self.record.first_byte is None:
                    self.record.sent_first_byte()
                self.send_deadline = None
                continue
            if self.file is not None:
                fd, offset, left = self.file
                if left <= 0:
                    self.file = None
                    sock.setblocking(True)  # as the app expects it for the next request
                    continue
                try:
                    sent = _sendfile_nowait(sock, fd, offset, left)
                except (BlockingIOError, InterruptedError):
                    return self._blocked()
                if sent == 0:  # the file is shorter than announced: the answer cannot be completed
                    raise ConnectionAbortedError("the file ended before its Content-Length")
                self.file = [fd, offset + sent, left - sent]
                self.send_deadline = None
                continue
            if self.iterator is not None:
                resp = cast(Response, self.resp)  # set before start_body made the iterator
                try:
                    item = next(self.iterator)
                except StopIteration:
                    self.iterator = None
                    resp.close()  # the head if nothing was written, the last chunk if chunked
                    continue
                if type(item) is serving.Wait:
                    self.wait = item  # before the answer (a slow upload) or between its pieces (a COPY)
                    return PARK_READ
                resp.write(cast(bytes, item))  # not a Wait (above)
                continue
            return None

    def _blocked(self) -> str:
        if self.send_deadline is None and self.send_timeout:
            self.send_deadline = time.monotonic() + self.send_timeout
        return PARK_WRITE

    def close(self, worker: "PyaiWorker") -> None:
        """The exchange is over (answered, or abandoned): release the app's iterable and log it."""
        if self.done:
            return
        self.done = True
        respiter, self.respiter, self.iterator = self.respiter, None, None
        try:
            if respiter is not None and hasattr(respiter, "close"):
                respiter.close()
        except Exception:
            worker.log.exception("closing a response failed")
        if self.resp is not None and worker.access_logging:
            try:
                worker.access(self)
            except Exception:
                worker.log.exception("access log failed")
        if self.record is not None:
            try:
                observe.finished(self.record, self._status(), self._body_bytes_sent(), self.conn.client)
            except Exception:
                worker.log.exception("observing a request failed")

    def _status(self) -> Optional[int]:
        """The status code answered, None when no answer began (the client left first)."""
        resp = self.resp
        return resp.status_code if resp is not None and resp.status else None

    def _body_bytes_sent(self) -> int:
        """Body bytes that reached the socket: a sendfile range is counted as sent before it goes."""
        if self.resp is None:
            return 0
        unsent = self.file[2] if self.file is not None else 0
        return max(0, self.resp.sent - unsent)


def _head_end(head: Union[bytes, bytearray]) -> int:
    """Where the head ends (after its blank line), -1 while it has not.  A head whose lines end
    in a bare LF ends at its first empty line too: the parser refuses it (400) instead of the
    client waiting for an answer to a head that never completes."""
    end = head.find(b"\r\n\r\n")
    bare = head.find(b"\n\n", 0, end if end >= 0 else len(head))
    if bare >= 0:
        return bare + 2
    return end + 4 if end >= 0 else -1


def _sendfile_nowait(sock: socket.socket, fd: int, offset: int, count: int) -> int:
    """os.sendfile without waiting: sendfile has no flag for that, so the socket is
    non-blocking while a file goes out (and blocking again after, see ``pump``)."""
    if sock.getblocking():
        sock.setblocking(False)
    return os.sendfile(sock.fileno(), fd, offset, min(count, MAX_IO))
