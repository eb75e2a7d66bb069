"""The gunicorn worker pyai runs: a poller for waiting, a thread pool for work.

Threads are for work that is ready; waiting on a client is the poller's job,
as in nginx.  The main thread accepts connections and polls every one that
waits for its client: for a request head (read into a buffer without
blocking, see ``pyai.server.connection``), for an upload's next bytes (the app
yields a ``pyai.serving.Wait``), for room in the socket to send more of an
answer, or for the client to close after ``Connection: close``.  A pool
thread gets a connection only when there is work: a complete head to answer,
bytes to receive, room to send.  Each wait has a deadline (``head_timeout``,
the upload's progress and rate deadlines, ``send_timeout``, 2 s for the
closing handshake), so no client holds anything for long.

The thread that answered keeps a busy kept-alive connection: it waits up to
``LINGER`` for the next request and serves it directly, and only while no
other connection waits for a thread (a round trip through the poller costs
more than a small request).  Every connection is counted once and closed
once, by the main thread; ``worker_connections`` caps them.  On TERM (and so
on HUP, which replaces the workers) the worker stops accepting, closes idle
connections, and lets the transfers in progress finish within
``graceful_timeout``.  On INT or QUIT (Ctrl-C: the master and every worker
get it) the worker stops at once instead: an exchange waiting in the poller is
abandoned (its app closed, so an upload's temporary file goes and the transfer
log gets its line), answered 503 when its answer has not begun, and the
connections close within ``QUICK_STOP``.  A request gunicorn's parser refuses (a malformed
request line or header, a head over the limits) is answered with pyai's JSON
error document instead of gunicorn's HTML page.
"""

import errno
import html
import json
import os
import queue
import re
import select
import selectors
import socket
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from gunicorn import http, util
from gunicorn.arbiter import Arbiter
from gunicorn.http import wsgi
from gunicorn.workers.base import Worker

from pyai import serving as parking
from pyai.config import load as load_config
from pyai.ops import observe
from pyai.ops.record import RECORD, Record
from pyai.server.connection import (
    CLOSE,
    DROP,
    EOF,
    HTTP2,
    PARK_READ,
    PARK_WRITE,
    PARTIAL,
    READ_HEAD,
    Connection,
    Exchange,
    head_limit,
)
from pyai.web.answers import error_document

# Long enough to cover a client's turn-around between keep-alive requests under
# load (tens to hundreds of microseconds), short enough that an idle
# connection returns its thread almost at once.
LINGER = 0.005
# An answer the socket cannot take now waits this long in its thread before it is
# parked: a client that reads at full speed makes room again within it.
SEND_LINGER = 0.005
# After "Connection: close" the client gets this long to read the answer and close.
CLOSE_LINGER = 2.0
# What it may still send meanwhile is read and discarded, up to this much: closing with
# unread bytes resets the connection, and a reset makes the peer drop our answer unread.
# A proxy that streams a refused upload on (nginx answers 100 Continue itself) keeps
# sending the body after our 401 or 409; it forwards the answer only if it gets to read it.
CLOSE_DRAIN_MAX = 64 * 1024 * 1024
_DISCARD = bytearray(256 * 1024)  # the main thread's: only the poller drains
# A stopping worker keeps idle kept-alive connections this long, for a request already on its way.
STOP_LINGER = 2.0
# INT/QUIT: the connections close within this (under the 2 s gunicorn's master gives a quick
# stop that interrupts a graceful one before it SIGKILLs), the clients' 503 included.
QUICK_STOP = 1.5
# Out of descriptors, the worker stops accepting for this long (instead of spinning on the listener).
ACCEPT_PAUSE = 0.5
# How often the poller looks for expired deadlines, and tells the arbiter it lives.
TICK = 0.25
# Unread request body a finished answer may still drain before the connection is reused.
DRAIN_WAIT = 0.05
WORKER_BOOT_ERROR = Arbiter.WORKER_BOOT_ERROR  # the arbiter stops instead of restarting us


class PyaiWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conns = set()
        # Connections submitted to the pool and not yet picked up (deque
        # append/pop are atomic: the main thread adds, pool threads take).
        self.waiting = deque()
        self.finished = queue.SimpleQueue()  # (conn, outcome) from the pool threads
        self.poller = None
        self.tpool = None
        self.accepting = False
        self.accept_paused_until = 0.0  # after running out of descriptors (see _accept)
        self.stopping_since = None
        self.quick = False  # INT or QUIT came: stop at once (see _begin_quick_stop)
        self.quick_since = None
        self.busy = set()  # connections a pool thread has now (the main thread adds and removes)
        settings = self.settings = load_config(prepare=False)
        self.head_timeout = settings.head_timeout or None
        self.send_timeout = settings.send_timeout or None
        self.head_max = head_limit(self.cfg)

    @classmethod
    def check_config(cls, cfg, log):
        if cfg.worker_connections < cfg.threads:
            log.warning("worker_connections (%s) is below threads (%s)", cfg.worker_connections, cfg.threads)

    def init_process(self):
        if self.cfg.is_ssl:
            # The poller reads heads and sends answers on the raw socket; TLS belongs in front (nginx).
            self.log.error(
                "pyai's worker does not terminate TLS: put a TLS proxy in front, or use worker_class = gthread"
            )
            sys.exit(WORKER_BOOT_ERROR)
        self.poller = selectors.DefaultSelector()
        self.tpool = ThreadPoolExecutor(max_workers=self.cfg.threads, thread_name_prefix="pyai")
        observe.start(self, self.settings)
        super().init_process()

    def handle_exit(self, sig, frame):
        self.alive = False  # the signal's byte on self.PIPE wakes the poller

    def handle_usr1(self, sig, frame):
        super().handle_usr1(sig, frame)  # gunicorn's own log files
        observe.reopen()

    def handle_quit(self, sig, frame):
        """INT or QUIT: a flag only.  The main thread stops at once (``_begin_quick_stop``).  Ctrl-C brings
        INT from the terminal and QUIT from the master at once: gunicorn's own handler (sys.exit here,
        the pool shut down here) could run inside itself, or inside the main thread's pool submit, and
        wait for ever on a lock the interrupted code holds (measured: 60 s, then the master's SIGKILL)."""
        self.alive = False
        self.quick = True  # the signal's byte on self.PIPE wakes the poller

    # ---- the main thread -------------------------------------------------

    def run(self):
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, self._on_wakeup)
        for listener in self.sockets:
            listener.setblocking(False)
        last_tick = 0.0
        while True:
            now = time.monotonic()
            if not self.alive and self.stopping_since is None:
                self._begin_stop(now)
            if self.quick and self.quick_since is None:
                self._begin_quick_stop(now)
            if self.quick_since is not None:
                if not self.conns or now - self.quick_since > QUICK_STOP:
                    break
            elif self.stopping_since is not None:
                if not self.conns or now - self.stopping_since > self.cfg.graceful_timeout:
                    break
            self._set_accepting(
                self.alive and len(self.conns) < self.cfg.worker_connections and now >= self.accept_paused_until
            )
            if now - last_tick >= TICK:
                last_tick = now
                self.notify()
                self._expire(now)
                if not self.is_parent_alive():
                    break
            try:
                events = self.poller.select(TICK)
            except InterruptedError:
                continue
            for key, _ in events:
                key.data(key.fileobj)
            self._collect_finished()
        self._set_accepting(False)
        for conn in list(self.conns - self.busy):
            self._close(conn)
        self.tpool.shutdown(wait=False, cancel_futures=True)
        self.poller.close()
        for listener in self.sockets:
            listener.close()
        if self.quick and self.busy:
            # A thread still moving a client's bytes (an upload streaming at full speed) would hold
            # the exit (the interpreter joins the pool) until its transfer ends: leave now.  Its
            # temporary file is the next sweep's.
            self.log.warning("quick stop: %d transfer(s) still running were cut", len(self.busy))
            os._exit(0)

    def is_parent_alive(self):
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    def _begin_stop(self, now):
        """Stop accepting and close the listeners; idle connections get STOP_LINGER for a request
        already on its way.  A listener left open would still let the kernel complete connections
        no one will answer; once every process has closed it, they are refused (on HUP the new
        workers hold it: nothing is refused)."""
        self.stopping_since = now
        self._set_accepting(False)
        for listener in self.sockets:
            listener.close()
        self.sockets = []
        for conn in self.conns:
            if conn.exchange is None and not conn.head and conn.deadline is not None:
                conn.deadline = min(conn.deadline, now + STOP_LINGER)

    def _begin_quick_stop(self, now):
        """INT or QUIT: every connection ends now.  Those the poller holds are abandoned at once;
        those a thread has are abandoned when it hands them back (``_collect_finished``)."""
        self.quick_since = now
        self.log.info("quick stop: abandoning %d connection(s)", len(self.conns))
        self.cfg.worker_int(self)
        for conn in list(self.conns - self.busy):
            self._abandon(conn, None, now)

    def _abandon(self, conn, outcome, now):
        """End a connection in a quick stop.  An exchange whose answer has not begun is answered 503
        (best effort) and logged as such; its app's iterable is closed (an upload's temporary file
        goes, the transfer log gets its line).  The connection then half-closes and waits, at most
        until the quick stop ends, for the client to close: closing with the rest of an upload
        unread would reset it, and a reset can make the client drop the 503 unread."""
        if conn.closed:
            return
        exchange = conn.exchange
        for fileobj in (conn.sock, exchange.wait.fd if exchange is not None and exchange.wait else None):
            try:
                if fileobj is not None:
                    self.poller.unregister(fileobj)
            except (KeyError, ValueError):
                pass
        if exchange is not None:
            exchange.wait = None
            conn.exchange = None
            resp = exchange.resp
            if resp is not None and not resp.headers_sent and not exchange.out:
                body = _error_body("503 Service Unavailable", "the server is stopping: send the request again")
                try:
                    conn.sock.send(_error_head("503 Service Unavailable", body) + body, socket.MSG_DONTWAIT)
                except OSError:
                    pass
                resp.status, resp.status_code = "503 Service Unavailable", 503  # what the logs say
            exchange.close(self)
        elif outcome != CLOSE and not conn.head:
            self._close(conn)  # idle, or its answer all sent: nothing to tell
            return
        self._close_gracefully(conn, now)
        if not conn.closed:
            conn.deadline = min(conn.deadline, self.quick_since + QUICK_STOP)

    def _set_accepting(self, enabled):
        if enabled == self.accepting:
            return
        for listener in self.sockets:
            if enabled:
                self.poller.register(listener, selectors.EVENT_READ, self._accept)
            else:
                self.poller.unregister(listener)
        self.accepting = enabled

    def _on_wakeup(self, fd):
        try:
            while os.read(self.PIPE[0], 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _wake(self):
        try:
            os.write(self.PIPE[1], b".")
        except (BlockingIOError, InterruptedError):
            pass  # a wake-up is pending already

    def _accept(self, listener):
        """One connection per wake-up (nginx's ``multi_accept off``): every worker polls the
        listener, so the next connection goes to whichever is free first.  Accepting all that
        wait let one worker take a burst of new connections and keep them while the other
        idled (measured: 8 kept-alive clients at 3000 req/s on one worker, 6000-12000 spread)."""
        if len(self.conns) < self.cfg.worker_connections:
            try:
                sock, client = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The listener stays readable: accepting again at once would spin.
                    self.log.error(
                        "cannot accept a connection (%s); accepting again in %s s", exc.strerror, ACCEPT_PAUSE
                    )
                    self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                    self._set_accepting(False)
                    return
                raise
            conn = Connection(sock, client, listener.getsockname(), self.head_max)
            self.conns.add(conn)
            self._wait_for_head(conn, time.monotonic())

    def _wait_for_head(self, conn, now):
        if conn.head_started is None:
            idle = self.cfg.keepalive if conn.served else (self.head_timeout or self.cfg.keepalive)
            conn.deadline = now + (idle or 0.001)
            if self.stopping_since is not None:
                conn.deadline = min(conn.deadline, now + STOP_LINGER)
        else:
            conn.deadline = conn.head_started + self.head_timeout if self.head_timeout else None
        self.poller.register(conn.sock, selectors.EVENT_READ, lambda _s, c=conn: self._on_head_bytes(c))

    def _on_head_bytes(self, conn):
        state = conn.read_head()
        if state == PARTIAL:
            if conn.head_started is not None and self.head_timeout:
                conn.deadline = conn.head_started + self.head_timeout
            return
        self.poller.unregister(conn.sock)
        if state == EOF and not conn.head:
            self._close(conn)
            return
        if state == HTTP2:  # no request to answer: GOAWAY, then let the client read it and close
            conn.refuse_http2()
            self._close_gracefully(conn, time.monotonic())
            return
        self._submit(conn, self._serve)

    def _submit(self, conn, step):
        conn.deadline = None
        self.busy.add(conn)
        self.waiting.append(None)
        self.tpool.submit(self._run_step, conn, step)

    def _collect_finished(self):
        while True:
            try:
                conn, outcome = self.finished.get_nowait()
            except queue.Empty:
                return
            self.busy.discard(conn)
            if self.quick_since is not None:
                self._abandon(conn, outcome, time.monotonic())
            else:
                self._after(conn, outcome, time.monotonic())

    def _after(self, conn, outcome, now):
        """Put a connection a thread has finished with where it waits next."""
        if conn.closed:
            return
        if outcome == READ_HEAD:
            if not self.alive and not conn.head:
                self._close(conn)  # a stopping worker takes no new request on it
            else:
                self._wait_for_head(conn, now)
        elif outcome == PARK_READ:
            wait = conn.exchange.wait
            # never a deadline in the past: an app that keeps asking must not spin the loop
            conn.deadline = max(wait.deadline, now + 0.01) if wait.deadline is not None else None
            self.poller.register(wait.fd, selectors.EVENT_READ, lambda _s, c=conn: self._resume(c))
        elif outcome == PARK_WRITE:
            conn.deadline = conn.exchange.send_deadline
            self.poller.register(conn.sock, selectors.EVENT_WRITE, lambda _s, c=conn: self._resume(c))
        elif outcome == CLOSE:
            self._close_gracefully(conn, now)
        else:
            self._close(conn)

    def _resume(self, conn):
        self.poller.unregister(conn.exchange.wait.fd if conn.exchange.wait else conn.sock)
        conn.exchange.wait = None
        self._submit(conn, self._continue)

    def _close_gracefully(self, conn, now):
        """Half-close, then wait (in the poller) for the client to close, so it reads the whole answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.deadline = now + CLOSE_LINGER
        self.poller.register(conn.sock, selectors.EVENT_READ, lambda _s, c=conn: self._drain(c))

    def _drain(self, conn):
        try:
            count = conn.sock.recv_into(_DISCARD, len(_DISCARD), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            count = 0
        conn.drained += count
        if not count or conn.drained >= CLOSE_DRAIN_MAX:
            self._close(conn)

    def _expire(self, now):
        for conn in [c for c in self.conns if c.deadline is not None and c.deadline <= now]:
            exchange = conn.exchange
            if exchange is not None and exchange.wait is not None:
                self._resume(conn)  # the app answers its own deadline (408)
            elif exchange is None and conn.head:
                self._refuse_slow_head(conn)
            else:
                self._close(conn)

    def _refuse_slow_head(self, conn):
        """A head that did not complete within head_timeout: 408, best effort, then close."""
        body = _error_body("408 Request Timeout", "the request head did not arrive in time")
        try:
            conn.sock.send(_error_head("408 Request Timeout", body) + body, socket.MSG_DONTWAIT)
        except OSError:
            pass
        self._close(conn)

    def _close(self, conn):
        """The one place a connection ends: unregistered, its exchange released, closed, uncounted."""
        if conn.closed:
            return
        conn.closed = True
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        exchange = conn.exchange
        if exchange is not None:
            if exchange.wait is not None:
                try:
                    self.poller.unregister(exchange.wait.fd)
                except (KeyError, ValueError):
                    pass
            conn.exchange = None
            exchange.close(self)
        util.close(conn.sock)
        self.conns.discard(conn)

    # ---- pool threads ----------------------------------------------------

    def _run_step(self, conn, step):
        self.waiting.pop()
        try:
            outcome = step(conn)
        except Exception:
            self.log.exception("Error handling request")
            outcome = DROP
        self.finished.put((conn, outcome))
        self._wake()

    def _serve(self, conn):
        """Answer the complete head in the buffer, and the next ones while the client keeps the connection busy."""
        while True:
            outcome = self._answer(conn)
            if outcome != READ_HEAD:
                return outcome
            outcome = self._next_head(conn, linger=True)
            if outcome is not None:
                return outcome

    def _continue(self, conn):
        """A parked exchange can move on (bytes arrived, room to send, or its deadline came)."""
        outcome = self._pump(conn)
        if outcome != READ_HEAD:
            return outcome
        return self._next_head(conn) or self._serve(conn)

    def _next_head(self, conn, linger=False):
        """None when the next head is ready to answer here, else where the connection waits."""
        conn.take_read_ahead()
        state = conn.read_head()
        if (
            state == PARTIAL
            and linger
            and not conn.head
            and self.alive
            and self._ready_soon(conn, select.POLLIN, LINGER)
        ):
            state = conn.read_head()
        if state == PARTIAL:
            return READ_HEAD
        if state == EOF and not conn.head:
            return DROP
        return None

    def _ready_soon(self, conn, events, seconds):
        """True when the socket is ready for ``events`` within ``seconds`` and no one waits for a thread."""
        if self.waiting:
            return False
        poller = select.poll()
        poller.register(conn.sock, events)
        return bool(poller.poll(seconds * 1000))

    def _answer(self, conn):
        """Parse the buffered head, run the app, and send as much of the answer as the socket takes."""
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.hand_head_to_parser()
        req = None
        try:
            # The head is in the parser's buffer: it needs no socket read (an
            # incomplete one at EOF ends in NoMoreData, an overlong one in 414/431).
            req = next(conn.parser)
            exchange = conn.exchange = Exchange(conn, req, self.send_timeout)
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg)
            exchange.resp, exchange.environ = resp, environ
            record = Record(req.method, req.path, environ.get("HTTP_X_FORWARDED_FOR"))
            environ[RECORD] = exchange.record = record
            resp.sock = exchange  # headers and body bytes collect in the exchange
            environ["wsgi.multithread"] = True
            environ[parking.CAN_PARK] = True
            environ[parking.SEND_CONTINUE] = exchange.send_continue
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            exchange.start_body(respiter, environ["wsgi.file_wrapper"], self.cfg)
        except StopIteration:
            return DROP
        except http.errors.NoMoreData:
            return DROP
        except OSError as exc:
            return self._socket_error(exc)
        except Exception as exc:  # noqa: BLE001 - a request gunicorn could not parse: refused with its error
            return self._refuse(conn, req, exc)
        return self._pump(conn)

    def _pump(self, conn):
        exchange = conn.exchange
        try:
            outcome = exchange.pump()
            # A client reading at full speed empties its socket buffer within
            # microseconds: parking for that would cost more than the wait.
            while outcome == PARK_WRITE and self._ready_soon(conn, select.POLLOUT, SEND_LINGER):
                outcome = exchange.pump()
        except OSError as exc:
            return self._socket_error(exc)
        except Exception as exc:
            if exchange.resp.headers_sent or exchange.out:
                self.log.exception("Error handling request")
                return DROP
            return self._refuse(conn, exchange.req, exc)
        if outcome is not None:
            return outcome
        conn.exchange = None
        conn.served += 1
        keep = not exchange.resp.should_close()
        exchange.close(self)
        if keep:
            keep = self._drained(conn)
        return READ_HEAD if keep else CLOSE

    def _drained(self, conn):
        """True when the request's body is fully read (what the app left is drained, briefly)."""
        reader = getattr(getattr(conn.parser.mesg, "body", None), "reader", None)
        if getattr(reader, "length", None) == 0:
            return True  # no body, or all of it read: the usual case, without a syscall
        try:
            return bool(conn.parser.finish_body(deadline=time.monotonic() + DRAIN_WAIT))
        except Exception:  # noqa: BLE001 - an unreadable rest of the body: the connection closes
            return False

    def _socket_error(self, exc):
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT, None):
            self.log.exception("Socket error processing request.")
        return DROP

    def _refuse(self, conn, req, exc):
        exchange = conn.exchange
        conn.exchange = None
        if exchange is not None:
            exchange.close(self)
        self.handle_error(req, conn.sock, conn.client, exc)
        return CLOSE

    def handle_error(self, req, client, addr, exc):
        """gunicorn's answer to a request it could not parse, as a JSON error document.

        gunicorn picks the status and logs; its HTML page is caught and turned
        into the document every other pyai error is.
        """
        page = _CapturedPage()
        super().handle_error(req, page, addr, exc)
        status, message = _status_and_message(page.data)
        body = _error_body(status, message)
        try:
            util.write_nonblock(client, _error_head(status, body) + body)
        except Exception:  # noqa: BLE001 - the client may be gone; there is no one left to tell
            self.log.debug("Failed to send error message.")


def _error_body(status, message):
    return json.dumps(error_document(status, message, f"request: {status}")).encode()


def _error_head(status, body):
    return (
        f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")


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
