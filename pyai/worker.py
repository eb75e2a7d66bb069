"""The gunicorn worker pyai runs: gthread, minus a round trip per request.

gunicorn's threaded worker hands a kept-alive connection back to its main
thread after every response; the main thread polls it and, when the next
request arrives, submits it to the pool again.  For small requests that
hand-off (a future, a wake-up pipe, two epoll_ctl calls and two GIL hand-overs
between threads) costs more than the request itself.  Here the thread that
answered keeps the connection while the client keeps it busy: it waits up to
``LINGER`` seconds for the next request and serves it directly, and only an
idle connection goes back to the poller.  A thread lingers only while no other
connection is waiting for a thread, so busy connections never starve new ones
for longer than one linger.  A connection that ends is closed by its thread
too, never by the main loop (see ``handle``).  And a request gunicorn itself
refuses (a malformed request line or header, a head over the limits) is
answered with pyai's JSON error document instead of gunicorn's HTML page.
"""

import html
import json
import re
import select
from collections import deque

from gunicorn import util
from gunicorn.workers.gthread import _DEFER, ThreadWorker

from . import __version__

# Long enough to cover a client's turn-around between keep-alive requests under
# load (tens to hundreds of microseconds), short enough that an idle
# connection returns its thread almost at once.
LINGER = 0.005


class PyaiWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One entry per connection submitted to the pool and not yet picked up
        # (deque append/pop are atomic: the main thread adds, pool threads take).
        self.waiting = deque()

    def enqueue_req(self, conn):
        self.waiting.append(None)
        super().enqueue_req(conn)

    def handle(self, conn):
        self.waiting.pop()
        while True:
            result = super().handle(conn)
            if not result:
                # Ending a connection waits up to 2 s for the client to close its
                # side (gunicorn's graceful close).  Done here it holds this thread;
                # left to the main loop it would hold every connection of the worker.
                conn.close(graceful=True)
                return result
            if result is _DEFER or not self.alive or conn.is_http2:
                return result
            if not conn.parser.unreader.buf.getvalue() and not self._next_request_soon(conn):
                return result

    def _next_request_soon(self, conn):
        """True when the client sends its next request within LINGER and no one waits for a thread."""
        if self.waiting:
            return False
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(LINGER * 1000))

    def handle_error(self, req, client, addr, exc):
        """gunicorn's answer to a request it could not parse, as a JSON error document.

        gunicorn picks the status and logs; its HTML page is caught and turned
        into the document every other pyai error is.
        """
        page = _CapturedPage()
        super().handle_error(req, page, addr, exc)
        status, message = _status_and_message(page.data)
        body = json.dumps(
            {"status": status, "message": message, "traceback": f"request: {status}", "version": __version__}
        ).encode()
        head = f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:  # the client may be gone; there is no one left to tell
            self.log.debug("Failed to send error message.")


class _CapturedPage:
    """Stands in for the client's socket while gunicorn writes its error page."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        return 0.0

    def setblocking(self, flag):
        pass

    def sendall(self, data):
        self.data += bytes(data)


_PAGE = re.compile(rb"HTTP/1\.1 ([^\r]*)\r\n.*?</h1>\s*(.*?)\s*</body>", re.S)


def _status_and_message(page):
    """``("400 Bad Request", "Invalid Request Line ...")`` from gunicorn's error page."""
    match = _PAGE.match(page)
    if match is None:
        return "400 Bad Request", "the request could not be read"
    status = match.group(1).decode("latin-1")
    message = html.unescape(match.group(2).decode("latin-1"))
    return status, message or status.partition(" ")[2]
