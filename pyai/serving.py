"""What pyai's app and server agree on: how the app waits for a slow client without holding a thread.

The worker offers parking by setting ``environ[CAN_PARK]``.  An app whose
answer has to wait (an upload whose bytes stopped arriving, a third-party
copy between two progress markers) then returns an iterable that yields a
``Wait``, before the first byte of its answer or between its pieces: the
worker puts the connection back into its poller until the Wait's descriptor
is readable or its deadline passes, and then goes on iterating in one of its
threads.  The descriptor is the client's socket, or one of the app's own (an
eventfd), which the app keeps open until the iterable goes on or is closed.
Under any other server the key is absent and the app must block instead of
yielding a Wait.

``environ[BODY]`` is the request's ``BodySource``: the client's socket, the bytes
the server read past the head, and the framing of the body, so the app can
receive it straight from the socket (``pyai.web.receive``) instead of through
``wsgi.input``.  Whatever it does not consume (a body it leaves unread, bytes
past the body's end) the server drains or keeps for the next request.
``environ[CLOSE_CONNECTION]`` set by the app closes the connection after the
answer (a body it leaves unread).

``may_block()`` says the thread is about to wait on a device or a remote
server (a flush to disk, the tape system, a database): pyai's worker serves
with one thread at a time and lets another take over its clients meanwhile.
It does nothing under any other server.

A plain request -- a GET or HEAD of one path segment, without a query, a
body, or any header but ``PLAIN_FIELDS`` -- may skip the environ: the server
calls the app's ``answer_plain(method, target, record)`` first (when the app
has one), with the request target (bytes) and the request's
``pyai.ops.record.Record``.  The app returns ``(status line, status code,
[(name, value)], body)``, the whole answer, or None when the request needs
more than that (a token to check, a file not found, a failure): then the
server calls the WSGI app as for any request, with a new Record.  Nothing the
app did for a None may be visible.  The body is bytes (a HEAD's is empty), or
a file-like object with ``fileno``, ``read`` and ``close`` holding exactly the
Content-Length's bytes from its offset, which the server sends (with sendfile)
and closes.  The server adds Server, Date and Connection.

``environ[SEND_CONTINUE]`` sends ``100 Continue`` to a client that asked for
it (``Expect: 100-continue``) and does nothing otherwise; the app calls it
once it has decided to read the body, so a request it refuses first (no
token, an id that holds a file) never invites the body.
"""

import re

from pyai.errors import BadFraming

CAN_PARK = "pyai.can_park"
SEND_CONTINUE = "pyai.send_continue"
BODY = "pyai.body"
CLOSE_CONNECTION = "pyai.close_connection"
_hand_over = None  # set by the server: lets another thread serve while this one blocks
# The request fields a plain request may carry (lower case): what curl, wget, wrk, hey and
# requests send with a GET, none of which changes an answer of the data plane (a Content-Type
# without a body describes nothing).
PLAIN_FIELDS = frozenset((b"host", b"user-agent", b"accept", b"accept-encoding", b"connection", b"content-type"))


def may_block():
    """The calling thread is about to wait on a device or a remote server (see the module's text)."""
    hand_over = _hand_over
    if hand_over is not None:
        hand_over()


def on_may_block(hand_over):
    """The server's: ``hand_over()`` is called by a thread about to block (None: nothing is)."""
    global _hand_over
    _hand_over = hand_over


# How long a thread waits for a request body's next bytes before the request is parked
# in the worker's poller: longer than the gaps of a healthy stream, short enough that
# slow clients hand their thread back at once.
PATIENCE = 0.1


class Wait:
    """Yielded by a response iterable: resume me when ``fd`` is readable or at ``deadline`` (monotonic)."""

    __slots__ = ("fd", "deadline")

    def __init__(self, fd, deadline):
        self.fd = fd
        self.deadline = deadline


class BodySource:
    """A request body as the server hands it over: ``sock`` to receive it from, after ``ahead``.

    ``length`` is what is left of a body with a Content-Length (None when it is
    chunked); whoever receives it takes its bytes out of ``ahead`` first
    (``take_ahead``) and counts what it receives from the socket (``consumed``).
    A chunked body's receiver takes all of ``ahead`` and gives back what it read
    past the body's end (``give_back``), then says it is ``complete``.  ``reader``
    names who reads it ("app" straight from the socket, "stream" through
    ``wsgi.input``): one body is never read both ways.
    """

    __slots__ = ("sock", "ahead", "length", "complete", "reader", "max_line", "max_trailer")

    def __init__(self, sock, ahead, length, *, max_line, max_trailer):
        self.sock = sock
        self.ahead = ahead  # bytearray: read past the head (the body's first bytes, maybe a next request)
        self.length = length
        self.complete = length == 0
        self.reader = None
        self.max_line = max_line  # the longest chunk-size line
        self.max_trailer = max_trailer  # the largest trailer section

    @property
    def chunked(self):
        return self.length is None

    def take_ahead(self):
        """The body's bytes the server already read (a next request's stay with the server)."""
        if self.length is None:
            data = bytes(self.ahead)
            self.ahead.clear()
            return data
        data = bytes(self.ahead[: self.length])
        del self.ahead[: len(data)]
        self.consumed(len(data))
        return data

    def consumed(self, count):
        """``count`` bytes of a body with a Content-Length were received."""
        self.length -= count
        if self.length <= 0:
            self.complete = True

    def give_back(self, data):
        """Bytes read past the end of the body: the next request's first ones."""
        self.ahead[:0] = data


# A trailer field (RFC 9110 5.5, 6.5): a token, a colon, a value of visible characters and blanks.
_TRAILER_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*[\t\x20-\x7e\x80-\xff]*")


def check_trailers(trailers):
    """Refuse a chunked body's trailer section (fields with CRLF between them) that is not
    a list of fields: ``pyai.errors.BadFraming``."""
    for line in trailers.split(b"\r\n") if trailers else ():
        if not _TRAILER_FIELD.fullmatch(line):
            raise BadFraming("invalid trailer field")


def send_continue(environ):
    """Invite the body now if the client waits for an invitation (see SEND_CONTINUE)."""
    send = environ.pop(SEND_CONTINUE, None)
    if send is not None:
        send()


def run_to_end(steps):
    """The return value of a generator of steps that must never wait (nothing could park it)."""
    try:
        next(steps)
    except StopIteration as done:
        return done.value
    steps.close()
    raise RuntimeError("a request waited for its client where it cannot be parked")
