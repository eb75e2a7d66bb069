"""The gunicorn worker pyai runs: threads that each wait in one shared poller and answer what they find.

Every thread of the worker (``threads``) waits in the same epoll set, and the
thread an event wakes does the work itself: it reads the request head (parsed
in C, ``pyai.server.head``), answers it, and puts the connection back into the
poller for whatever it waits for next.  There is no hand-off between a poller
and a pool: the thread that reads a ready request answers it.  Each descriptor
is registered one-shot, so exactly one thread has a connection at a time
(``Connection.armed`` says the poller has it; taking it is one locked test).

Only one of those threads has the *turn* to wait and serve at a time; the
others wait for it.  Threads of one process serving at once would trade the
interpreter's lock at every system call, and that trading cost more than the
requests themselves (measured: 16 threads serving small GETs spent twice the
CPU per request of one).  A thread that holds the turn longer than ``STALL``
in one step (a slow disk, a tape system's call, an upload arriving faster than
it can be read) is passed over: the main thread gives another thread a turn,
and the slow one waits for a turn again once its step ends.  A step about to
wait on a device or a remote server says so (``pyai.serving.may_block``: an
upload's flush to disk, every request of the hpss and hsmsideband backends,
each read and write of HPSS) and passes its turn on at once.  So ``threads``
bounds how many slow steps run at once, not how many requests.

Waiting on a client is the poller's: for a request head, for an upload's next
bytes (the app yields a ``pyai.serving.Wait``), for room in the socket to send
more of an answer, or for the client to close after ``Connection: close``.
Each wait has a deadline (``head_timeout``, the upload's progress and rate
deadlines, ``send_timeout``, 2 s for the closing handshake); the main thread
looks for the expired ones every ``TICK``, tells the arbiter the worker lives,
and handles the signals.  ``worker_connections`` caps the connections.

On TERM (and so on HUP, which replaces the workers) the worker stops
accepting, closes idle connections, and lets the transfers in progress finish
within ``graceful_timeout``.  On INT or QUIT (Ctrl-C: the master and every
worker get it) the worker stops at once instead: an exchange waiting in the
poller is abandoned (its app closed, so an upload's temporary file goes and the
transfer log gets its line), answered 503 when its answer has not begun, and
the connections close within ``QUICK_STOP``.  A request head the parser
refuses (a malformed request line or field, a head over the limits) is
answered with pyai's JSON error document.
"""

import errno
import gc
import json
import os
import select
import socket
import sys
import threading
import time
from datetime import timedelta
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Protocol, Set, Tuple, Union, cast

from gunicorn import util
from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from pyai import native, serving
from pyai.config import load as load_config
from pyai.native import format_answer, plain_limits, plain_parser, plain_request, read_plain
from pyai.ops import observe
from pyai.ops.record import RECORD, Record
from pyai.server import balance
from pyai.server.connection import (
    CLOSE,
    COMPLETE,
    DROP,
    EOF,
    HTTP2,
    OVERLONG,
    PARK_READ,
    PARK_WRITE,
    PARTIAL,
    READ_HEAD,
    Connection,
    Exchange,
)
from pyai.server.head import BadHead, Head, Limits, parse, refuse_overlong
from pyai.server.wsgi import SERVER, Clock, FileWrapper, Forwarded, Response, connection_environ, environ_for
from pyai.web.answers import error_document

if TYPE_CHECKING:
    from pyai.server.wsgi import App

ONESHOT = select.EPOLLONESHOT
READ = select.EPOLLIN | select.EPOLLRDHUP | ONESHOT
WRITE = select.EPOLLOUT | ONESHOT
BATCH = 16  # events taken per poll: a batch another thread may take back (see PyaiWorker._hand_back)
# After "Connection: close" the client gets this long to read the answer and close.
CLOSE_LINGER = 2.0
# What it may still send meanwhile is read and discarded, up to this much: closing with
# unread bytes resets the connection, and a reset makes the peer drop our answer unread.
# A proxy that streams a refused upload on (nginx answers 100 Continue itself) keeps
# sending the body after our 401 or 409; it forwards the answer only if it gets to read it.
CLOSE_DRAIN_MAX = 64 * 1024 * 1024
# Where bytes read only to be thrown away go (a drained body, a closing client's): one buffer
# for every thread, since nobody reads what is in it.
_DISCARD = bytearray(256 * 1024)
# A stopping worker keeps idle kept-alive connections this long, for a request already on its way.
STOP_LINGER = 2.0
# INT/QUIT: the connections close within this (under the 2 s gunicorn's master gives a quick
# stop that interrupts a graceful one before it SIGKILLs), the clients' 503 included.
QUICK_STOP = 1.5
# Out of descriptors, the worker stops accepting for this long (instead of spinning on the listener).
ACCEPT_PAUSE = 0.5
# How often the main thread looks for expired deadlines, and tells the arbiter it lives.
TICK = 0.25
# A thread serving one step longer than this is passed over: another thread gets a turn.
STALL = 0.01
# What a plain answer's file is read in when sendfile is off (as the data plane's file bodies are).
PLAIN_FILE_BLOCK = 1024 * 1024
# A plain request's environ, for what an answer looks up in one: nothing (and nothing is added).
_NO_ENVIRON: Mapping[str, Any] = MappingProxyType({})
# socket's flags are enum members: or-ing them per send runs enum code, so the int is kept
_SEND = int(socket.MSG_DONTWAIT)
# Unread request body a finished answer may still drain before the connection is reused.
DRAIN_WAIT = 0.05
WORKER_BOOT_ERROR = Arbiter.WORKER_BOOT_ERROR  # the arbiter stops instead of restarting us

# A listening socket: gunicorn's (gunicorn.sock), which has no type stubs.
Listener = Any
# What an event of the poller names: a connection, or a listener.
Target = Union[Connection, Listener]
# A plain request, as pyai.native.plain_request recognises it: the head's length, the method,
# the target, whether the connection is kept alive, the version.
PlainRequest = Tuple[int, str, bytes, bool, str]


class PlainFile(Protocol):
    """The file a plain answer sends (``pyai.serving``): its Content-Length's bytes from its offset."""

    def fileno(self) -> int: ...

    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


# The app's answer_plain (pyai.serving): (status line, status code, fields, body), or None.
AnswerPlain = Callable[[str, bytes, Record], Optional[Tuple[str, int, List[Tuple[str, str]], Union[bytes, PlainFile]]]]


class PyaiWorker(Worker):
    wsgi: "App"  # the app, loaded by gunicorn
    sockets: List[Listener]  # the listeners gunicorn hands every worker
    # Made in init_process: in the worker's process, after the fork.
    poller: select.epoll
    stop_pipe: Tuple[int, int]  # wakes every thread when the worker stops

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conns: Set[Connection] = set()
        self.targets: Dict[int, Optional[Target]] = {}  # descriptor -> its Connection, a listener, or the stop pipe
        self.lock = threading.Lock()  # taking a connection from the poller; the listeners' state
        self.threads: List[threading.Thread] = []
        self.turns = threading.Semaphore(1)  # threads allowed to wait and serve: one, plus one per stalled
        self.serving: List[_Turn] = []  # each thread's _Turn: when its step began, and whether it was passed over
        self.own_turn = threading.local()  # .turn: the calling thread's _Turn
        self.running = True  # the threads wait for events while it is True
        self.accepting = False
        self.accept_paused_until = 0.0  # after running out of descriptors, or while loaded (see _accept)
        self.balancing_since: Optional[float] = None  # when this worker stopped listening for being loaded
        self.stopping_since: Optional[float] = None
        self.quick = False  # INT or QUIT came: stop at once (see _begin_quick_stop)
        self.quick_since: Optional[float] = None
        self.access_logging = False  # gunicorn's access log is on (set in init_process)
        self.plain: Optional[AnswerPlain] = None  # the app's answer_plain (see pyai.serving), set in run
        settings = self.settings = load_config(prepare=False)
        self.head_timeout = settings.head_timeout or None
        self.send_timeout = settings.send_timeout or None
        self.limits = Limits(self.cfg)
        self.forwarded = Forwarded(self.cfg)

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:  # gunicorn's Config and log
        if cfg.worker_connections < cfg.threads:
            log.warning("worker_connections (%s) is below threads (%s)", cfg.worker_connections, cfg.threads)

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            # The worker reads heads and sends answers on the raw socket; TLS belongs in front (nginx).
            self.log.error(
                "pyai's worker does not terminate TLS: put a TLS proxy in front, or use worker_class = gthread"
            )
            sys.exit(WORKER_BOOT_ERROR)
        self.poller = select.epoll()
        self.stop_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.slot = balance.slot_of(self.age)
        # gunicorn 27 says whether its access log is on; an older one is asked for each line
        # (its access() returns at once when the log is off)
        self.access_logging = getattr(self.log, "access_log_enabled", True)
        observe.start(self, self.settings)
        super().init_process()

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        self.alive = False  # the signal's byte on self.PIPE wakes the main thread

    def handle_usr1(self, sig: int, frame: Optional[FrameType]) -> None:
        super().handle_usr1(sig, frame)  # gunicorn's own log files
        observe.reopen()

    def handle_quit(self, sig: int, frame: Optional[FrameType]) -> None:
        """INT or QUIT: a flag only.  The main thread stops at once (``_begin_quick_stop``).  Ctrl-C brings
        INT from the terminal and QUIT from the master at once: gunicorn's own handler (sys.exit here)
        could run inside itself, or inside a lock the interrupted code holds."""
        self.alive = False
        self.quick = True  # the signal's byte on self.PIPE wakes the main thread

    # ---- the main thread: signals, deadlines, stops ------------------------

    def run(self) -> None:
        # The app, its modules and its configuration live as long as the worker: out of the
        # collector's sight, a full collection no longer walks them (measured: 5 % of a small GET).
        gc.freeze()
        balance.hold(self.slot, 0)  # compared only once it listens (loading the app takes a second)
        for listener in self.sockets:
            listener.setblocking(False)
            self.targets[listener.fileno()] = listener
            self.poller.register(listener.fileno(), ONESHOT)  # armed by _set_accepting
        self.targets[self.stop_pipe[0]] = None
        self.threads = [
            threading.Thread(target=self._serve_events, name=f"pyai-{i}", daemon=True) for i in range(self.cfg.threads)
        ]
        serving.on_may_block(self._pass_on)
        self.plain = self._plain_answerer()
        for thread in self.threads:
            thread.start()
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
            elif now >= self.accept_paused_until:
                if (
                    self.balancing_since is not None
                    and now - self.balancing_since < balance.PATIENCE
                    and (balance.loaded(self.slot, len(self.conns)))
                ):
                    self.accept_paused_until = now + balance.DELAY  # still loaded: the others accept
                else:
                    self.balancing_since = None
                    self._set_accepting(len(self.conns) < self.cfg.worker_connections)
            self._pass_over_stalled(now)
            if now - last_tick >= TICK:
                last_tick = now
                self.notify()
                self._expire(now)
                if not self.is_parent_alive():
                    break
            wait = STALL if self.conns else TICK  # steps to watch only while there are connections
            if self.stopping_since is None and self.accept_paused_until > now:
                wait = min(wait, self.accept_paused_until - now)  # a balance delay ends soon (see _accept)
            try:
                select.select([self.PIPE[0]], [], [], wait)
                while os.read(self.PIPE[0], 4096):
                    pass
            except (BlockingIOError, InterruptedError):
                pass
        self._stop_threads()

    def _stop_threads(self) -> None:
        self._set_accepting(False)
        self.running = False
        self.poller.register(self.stop_pipe[0], select.EPOLLIN)  # level-triggered: wakes every thread
        os.write(self.stop_pipe[1], b".")
        self.turns.release(len(self.threads))  # and those waiting for a turn
        for conn in list(self.conns):
            if self._take(conn):
                self._close(conn)
        deadline = time.monotonic() + (QUICK_STOP if self.quick else 1.0)
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [conn for conn in list(self.conns) if not conn.closed]  # list(): threads may still end some
        for listener in self.sockets:
            listener.close()
        if busy:
            # A thread still moving a client's bytes (an upload streaming at full speed) would hold
            # the exit until its transfer ends: leave now.  Its temporary file is the next sweep's.
            self.log.warning("stop: %d transfer(s) still running were cut", len(busy))
            observe.flush()  # os._exit runs no atexit hook: the counts and log lines go now
            os._exit(0)
        self.poller.close()

    def is_parent_alive(self) -> bool:
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            return False
        return True

    def _begin_stop(self, now: float) -> None:
        """Stop accepting and close the listeners; idle connections get STOP_LINGER for a request
        already on its way.  A listener left open would still let the kernel complete connections
        no one will answer; once every process has closed it, they are refused (on HUP the new
        workers hold it: nothing is refused)."""
        self.stopping_since = now
        with self.lock:
            self.accepting = False
            for listener in self.sockets:
                self.targets.pop(listener.fileno(), None)
                self.poller.unregister(listener.fileno())
                listener.close()
            self.sockets = []
        for conn in list(self.conns):
            if conn.exchange is None and not conn.head and conn.deadline is not None:
                conn.deadline = min(conn.deadline, now + STOP_LINGER)

    def _begin_quick_stop(self, now: float) -> None:
        """INT or QUIT: every connection ends now.  Those the poller holds are abandoned at once;
        those a thread has are abandoned when it is done with them (``_after``)."""
        self.quick_since = now
        self.log.info("quick stop: abandoning %d connection(s)", len(self.conns))
        self.cfg.worker_int(self)
        for conn in list(self.conns):
            if self._take(conn):
                self._abandon(conn, None, now)

    def _abandon(self, conn: Connection, outcome: Optional[str], now: float) -> None:
        """End a connection in a quick stop.  An exchange whose answer has not begun is answered 503
        (best effort) and logged as such; its app's iterable is closed (an upload's temporary file
        goes, the transfer log gets its line).  The connection then half-closes and waits, at most
        until the quick stop ends, for the client to close: closing with the rest of an upload
        unread would reset it, and a reset can make the client drop the 503 unread."""
        if conn.closed:
            return
        exchange = conn.exchange
        if exchange is not None:
            exchange.wait = None
            self._unpoll_wait(conn)
            conn.exchange = None
            resp = exchange.resp
            if resp is not None and not resp.headers_sent and not exchange.out:
                _tell(conn, "503 Service Unavailable", "the server is stopping: send the request again")
                resp.status, resp.status_code = "503 Service Unavailable", 503  # what the logs say
            exchange.close(self)
        elif conn.closing or (outcome != CLOSE and not conn.head):
            self._close(conn)  # idle, its answer all sent, or already closing: nothing to tell
            return
        self._close_gracefully(conn, now, limit=None if self.quick_since is None else self.quick_since + QUICK_STOP)

    def _expire(self, now: float) -> None:
        for conn in [c for c in list(self.conns) if c.deadline is not None and c.deadline <= now]:
            if not self._take(conn):
                continue  # a thread has it: its own deadline is its to keep
            exchange = conn.exchange
            if exchange is not None and exchange.wait is not None:
                self._step(conn)  # the app answers its own deadline (408)
            elif exchange is None and conn.head and not conn.closing:
                self._refuse_slow_head(conn)
            else:
                self._close(conn)

    def _refuse_slow_head(self, conn: Connection) -> None:
        """A head that did not complete within head_timeout: 408, best effort, then close."""
        _tell(conn, "408 Request Timeout", "the request head did not arrive in time")
        self._close(conn)

    # ---- the poller ------------------------------------------------------

    def _take(self, conn: Connection) -> bool:
        """Take ``conn`` from the poller: True for the one caller that gets it."""
        with self.lock:
            return _take_armed(conn)

    def _arm(self, conn: Connection, fd: int, events: int) -> None:
        """Give ``conn`` back to the poller, waiting on ``fd``: the last thing its thread does with it.

        Under the lock, so no one takes it (an event, or the main thread for a deadline)
        before it is registered, nor takes it only to have this thread register it again."""
        with self.lock:
            conn.armed = True
            conn.events = events
            if conn.polled == fd:
                self.poller.modify(fd, events)
                return
            if conn.polled is not None:
                self.targets.pop(conn.polled, None)
                self.poller.unregister(conn.polled)
            self.targets[fd] = conn
            conn.polled = fd
            self.poller.register(fd, events)

    def _unpoll_wait(self, conn: Connection) -> None:
        """Take a descriptor of the app's out of the poller (a Wait on something else than the
        client's socket: a COPY's progress), before the app may close it: epoll forgets a closed
        descriptor by itself, and its number, reused, would name another connection's."""
        with self.lock:
            polled = conn.polled
            if polled is None or polled == conn.fd:
                return
            conn.polled = None
            self.targets.pop(polled, None)
            try:
                self.poller.unregister(polled)
            except (OSError, ValueError):
                pass

    def _set_accepting(self, enabled: bool) -> None:
        with self.lock:
            if enabled == self.accepting or (enabled and (not self.alive or not self.sockets)):
                return
            self.accepting = enabled
            for listener in self.sockets:
                self.poller.modify(listener.fileno(), select.EPOLLIN | ONESHOT if enabled else ONESHOT)

    def _pass_over_stalled(self, now: float) -> None:
        """Give another thread a turn for each thread stuck in one step longer than STALL."""
        for turn in self.serving:
            since = turn.since
            if since is not None and not turn.passed_over and now - since > STALL:
                self._pass_over(turn)

    def _pass_on(self) -> None:
        """``pyai.serving.may_block`` in one of the serving threads: its turn goes to another now."""
        turn = getattr(self.own_turn, "turn", None)
        if turn is not None and turn.since is not None:
            self._pass_over(turn)

    def _pass_over(self, turn: "_Turn") -> None:
        with self.lock:  # once per stall, whoever sees it (a second turn given would never come back)
            if turn.passed_over:
                return
            turn.passed_over = True
            self._hand_back(turn.pending)
        self.turns.release()

    def _hand_back(self, pending: List[Target]) -> None:
        """Give the poller back the events a passed-over thread had taken but not begun (under the
        lock): one-shot, they are disabled until re-armed, and the next thread's poll finds them."""
        for target in pending:
            try:
                if type(target) is Connection:
                    if target.armed and target.polled is not None:
                        self.poller.modify(target.polled, target.events)
                elif self.accepting:
                    self.poller.modify(target.fileno(), select.EPOLLIN | ONESHOT)
            except (OSError, ValueError):
                pass  # a listener a stop has closed: nothing to give back
        pending.clear()

    def _next_target(self, turn: "_Turn") -> Optional[Target]:
        """The next connection (taken from the poller) or listener of this thread's batch; None when
        the batch is done, or was handed back because the thread was passed over."""
        pending = turn.pending
        with self.lock:
            while pending:
                target = pending.pop()
                if type(target) is not Connection:
                    return target
                if _take_armed(target):  # else closed, or taken for its deadline, since the poll
                    return target
        return None

    def _plain_answerer(self) -> Optional[AnswerPlain]:
        """The app's ``answer_plain`` when plain requests may skip the environ (``pyai.serving``), else None."""
        answer_plain = getattr(self.wsgi, "answer_plain", None)
        if answer_plain is None or self.access_logging:
            return None  # gunicorn's access log formats from the environ: with it on, every request has one
        library = plain_parser()
        if library is None:
            if native.__impl__ == "c":  # the pure build parses every head in Python, as it is meant to
                self.log.warning(
                    "plain GETs and HEADs take the full path: no h2o library provides picohttpparser"
                    " (install libh2o-evloop0.13 for the faster path)"
                )
            return None
        plain_limits(self.limits.line, self.limits.fields, self.limits.field)
        self.log.info("plain GETs and HEADs are parsed by picohttpparser from %s", library)
        return answer_plain

    def _serve_events(self) -> None:
        """One thread: with the turn, wait for an event and do what it asks, until the worker stops."""
        poll = self.poller.poll
        targets = self.targets
        clock = time.monotonic
        turn = self.own_turn.turn = _Turn()
        self.serving.append(turn)
        while self.running:
            self.turns.acquire()
            # Passed over, the turn this thread had went to another thread: wait for one again.
            with self.lock:
                turn.passed_over = False
            while not turn.passed_over:
                try:
                    events = poll(-1, BATCH)
                except InterruptedError:
                    continue
                except (OSError, ValueError):
                    return  # the poller was closed: the worker is ending
                if not self.running:
                    return
                # Several at once: one poll for a busy worker's batch.  Resolved now, as a descriptor
                # closed meanwhile may name another connection by the time its turn comes.
                turn.pending.extend(t for fd, _ in reversed(events) if (t := targets.get(fd)) is not None)
                while (target := self._next_target(turn)) is not None:
                    turn.since = clock()
                    if type(target) is Connection:
                        self._step(target)
                    else:
                        self._accept(target)
                    turn.since = None

    def _accept(self, listener: Listener) -> None:
        """One connection per wake-up (nginx's ``multi_accept off``): every worker polls the
        listener, so the next connection goes to whichever is free first."""
        try:
            sock, client = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            sock = None
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # The listener stays readable: accepting again at once would spin.
                self.log.error("cannot accept a connection (%s); accepting again in %s s", exc.strerror, ACCEPT_PAUSE)
                self.accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                with self.lock:
                    self.accepting = False
                return
            sock = None
            if exc.errno != errno.EBADF and self.stopping_since is None:  # EBADF: a stop closed the listener
                self.log.exception("accept failed")
        if sock is not None:
            conn = Connection(sock, client, listener.getsockname(), self.limits.head)
            self.conns.add(conn)
            balance.hold(self.slot, len(self.conns))
        loaded = balance.loaded(self.slot, len(self.conns))
        with self.lock:  # re-armed for the next one, unless the worker stopped accepting meanwhile
            if self.accepting and not loaded and len(self.conns) < self.cfg.worker_connections:
                self.poller.modify(listener.fileno(), select.EPOLLIN | ONESHOT)
            else:
                self.accepting = False
        if loaded:  # another worker holds fewer: it takes the next connections (see pyai.server.balance)
            now = time.monotonic()
            self.balancing_since = now
            self.accept_paused_until = now + balance.DELAY
            self._wake_main()
        if sock is None:
            return
        if self.stopping_since is not None:
            self._close(conn)
            return
        self._step(conn)  # a client usually sends its request with the connection

    # ---- a thread with a connection ---------------------------------------

    def _step(self, conn: Connection) -> None:
        """``_on_ready``, and the connection closed if it fails unexpectedly (the thread lives on)."""
        try:
            self._on_ready(conn)
        except Exception:
            self.log.exception("Error handling a connection")
            self._close(conn)

    def _on_ready(self, conn: Connection) -> None:
        """The connection's socket (or what its exchange waits for) is ready, or a deadline came."""
        if conn.closing:
            self._drain(conn)
            return
        if conn.exchange is not None:
            conn.exchange.wait = None
            self._unpoll_wait(conn)
            self._after(conn, self._next(conn, self._pump(conn)))
            return
        if self.plain is not None and not conn.head:
            # An idle connection, the usual case: receive and recognise a plain request in one call.
            request = read_plain(conn.fd, conn.head)
            outcome = self._answer_plain(conn, request) if request is not None else None
            if outcome is None and conn.head:  # a head still to answer (or the first bytes of one)
                conn.head_started = time.monotonic()
                if request is not None:  # the app wants the full path: no second try on the plain one
                    outcome = self._serve(conn, conn.head_state(), plain=False)
            if outcome is not None:
                self._after(conn, self._next(conn, outcome))
                return
        state = conn.read_head()
        if state == PARTIAL:
            self._after(conn, READ_HEAD)
        elif state == EOF:
            self._close(conn)
        elif state == HTTP2:  # no request to answer: GOAWAY, then let the client read it and close
            conn.refuse_http2()
            self._close_gracefully(conn, time.monotonic())
        else:
            self._after(conn, self._serve(conn, state))

    def _after(self, conn: Connection, outcome: str) -> None:
        """Put a connection where it waits next."""
        if conn.closed:
            return
        now = time.monotonic()
        if self.quick_since is not None:
            self._abandon(conn, outcome, now)
        elif outcome == READ_HEAD:
            if not self.alive and not conn.head:
                self._close(conn)  # a stopping worker takes no new request on it
                return
            if conn.head_started is None:
                if conn.head:
                    conn.head_started = now
                idle = self.cfg.keepalive if conn.served else (self.head_timeout or self.cfg.keepalive)
                conn.deadline = now + (idle or 0.001)
                if self.stopping_since is not None:
                    conn.deadline = min(conn.deadline, now + STOP_LINGER)
            if conn.head_started is not None:
                conn.deadline = conn.head_started + self.head_timeout if self.head_timeout else None
            self._arm(conn, conn.fd, READ)
        elif outcome == PARK_READ:
            # its exchange's pump set the Wait it parks for
            wait = cast(serving.Wait, cast(Exchange, conn.exchange).wait)
            # never a deadline in the past: an app that keeps asking must not spin
            conn.deadline = max(wait.deadline, now + 0.01) if wait.deadline is not None else None
            self._arm(conn, wait.fd, READ)
        elif outcome == PARK_WRITE:
            conn.deadline = cast(Exchange, conn.exchange).send_deadline  # its exchange's pump is blocked
            self._arm(conn, conn.fd, WRITE)
        elif outcome == CLOSE:
            self._close_gracefully(conn, now)
        else:
            self._close(conn)

    def _serve(self, conn: Connection, state: str, plain: bool = True) -> str:
        """Answer the complete head in the buffer, and the next ones already there (pipelined).
        ``plain``: the first may be a plain request (False: the app has declined it already)."""
        while True:
            if state == OVERLONG:
                return self._refuse(conn, None, refuse_overlong(conn.head, self.limits))
            outcome = self._answer(conn, plain)
            plain = True
            if outcome != READ_HEAD or not conn.head or not self.alive:
                return outcome
            state = conn.head_state()
            if state not in (COMPLETE, OVERLONG):
                return READ_HEAD

    def _next(self, conn: Connection, outcome: str) -> str:
        """After an answer (``outcome``): the requests already in the buffer (pipelined) are answered too."""
        if outcome != READ_HEAD or not conn.head or not self.alive:
            return outcome
        state = conn.head_state()
        return self._serve(conn, state) if state in (COMPLETE, OVERLONG) else READ_HEAD

    def _answer(self, conn: Connection, plain: bool = True) -> str:
        """Parse the buffered head, run the app, and send as much of the answer as the socket takes."""
        if plain and self.plain is not None:
            request = plain_request(conn.head)  # a plain GET or HEAD, recognised in C (or None)
            if request is not None:
                outcome = self._answer_plain(conn, request)
                if outcome is not None:
                    return outcome
        try:
            head = parse(conn.take_head(), self.limits)
        except BadHead as exc:
            return self._refuse(conn, None, exc)
        source = serving.BodySource(
            conn.sock,
            conn.head,
            None if head.chunked else (head.length or 0),
            max_line=self.limits.field,
            max_trailer=self.limits.field * 32,
        )
        exchange = conn.exchange = Exchange(conn, head, source, self.send_timeout)
        cfg = self.cfg
        if conn.environ is None:
            conn.environ = connection_environ(conn, cfg)
        environ = exchange.environ = environ_for(head, conn.environ, source, self.forwarded)
        must_close = self._count_request(head.keep_alive)
        resp = exchange.resp = Response(head.method, head.version, exchange.out, environ, must_close)
        record = Record(head.method, head.path.decode("latin-1"), environ.get("HTTP_X_FORWARDED_FOR"))
        environ[RECORD] = exchange.record = record
        if exchange.continue_pending:
            environ[serving.SEND_CONTINUE] = exchange.send_continue
        try:
            respiter = self.wsgi(environ, resp.start_response)
            exchange.start_body(respiter, cfg.sendfile is not False)
        except OSError as exc:
            return self._socket_error(exc)
        except Exception as exc:  # noqa: BLE001 - the app failed outside its own error answers
            return self._failed(conn, exc)
        return self._pump(conn)

    def _answer_plain(self, conn: Connection, request: PlainRequest) -> Optional[str]:
        """Answer a plain request (``pyai.serving``) with the app's whole answer, or None when the
        app has none (the head stays in the buffer, for the full path).  The head and a small
        body leave in one send, with no environ and no exchange; an exchange is made only for
        what the socket does not take at once, and for a file (sent with sendfile)."""
        answer_plain = self.plain
        if answer_plain is None:  # the callers check first; without the app's, there is no plain answer
            return None
        length, method, target, keep_alive, version = request
        record = Record(method, target.decode("latin-1"), None)
        answer = answer_plain(method, target, record)
        if answer is None:
            return None
        del conn.head[:length]
        conn.head_started = None  # what follows is the next request's (see _after)
        status, code, headers, body = answer
        must_close = self._count_request(keep_alive)
        if type(body) is bytes:
            omitted = method == "HEAD" or code == 204
            data, closes = format_answer(status, headers, must_close, SERVER, Clock.date(), None if omitted else body)
            try:
                sent = conn.sock.send(data, _SEND)
            except OSError:
                sent = 0  # the exchange sends again, and handles what the socket says
            if sent:
                record.sent_first_byte()
            if sent == len(data):  # the usual case: all of it went
                try:
                    observe.finished(record, code, 0 if omitted else len(body), conn.client)
                except Exception:
                    self.log.exception("observing a request failed")
                conn.served += 1
                return CLOSE if closes else READ_HEAD
        resp = Response(method, version, bytearray(), _NO_ENVIRON, must_close)
        resp.start_plain(status, code, headers)
        head = Head.plain(method, target, version, keep_alive)
        exchange = conn.exchange = Exchange(conn, head, None, self.send_timeout)
        exchange.record, exchange.resp, exchange.out, exchange.environ = record, resp, resp.out, _NO_ENVIRON
        if type(body) is bytes:  # the rest of what the socket did not take
            resp.headers_sent, resp.must_close, resp.sent = True, closes, len(body) if not omitted else 0
            resp.out += memoryview(data)[sent:]
        else:  # a file: sent as a WSGI app's file wrapper is, and closed at the end
            file = cast(PlainFile, body)  # its type is not bytes: the app's file (see pyai.serving)
            exchange.start_body(FileWrapper(file, PLAIN_FILE_BLOCK), self.cfg.sendfile is not False)
        return self._pump(conn)

    def _count_request(self, keep_alive: bool) -> bool:
        """Count a request towards ``max_requests``: True when its connection closes after the answer."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        return not keep_alive or not self.alive or not self.cfg.keepalive

    def _pump(self, conn: Connection) -> str:
        exchange = cast(Exchange, conn.exchange)  # every caller has one under way
        try:
            outcome = exchange.pump()
        except OSError as exc:
            return self._socket_error(exc)
        except Exception as exc:  # noqa: BLE001 - the app failed outside its own error answers
            return self._failed(conn, exc)
        if outcome is not None:
            return outcome
        conn.exchange = None
        conn.served += 1
        keep = not cast(Response, exchange.resp).should_close()  # made before the answer began
        exchange.close(self)
        if keep:
            keep = self._drained(conn, exchange.source)
        return READ_HEAD if keep else CLOSE

    def _drained(self, conn: Connection, source: Optional[serving.BodySource]) -> bool:
        """True when the request's body is fully read (what the app left is drained, briefly)."""
        if source is None or source.complete:
            return True  # no body (a plain request has none), or all of it read: without a syscall
        if source.chunked or source.reader is not None:
            return False  # an unread chunked body, or one the app gave up on: its end is unknown
        source.take_ahead()  # what came with the head, counted
        deadline = time.monotonic() + DRAIN_WAIT
        while not source.complete:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([conn.sock], [], [], left)[0]:
                return False
            try:
                count = conn.sock.recv_into(_DISCARD, min(len(_DISCARD), source.length), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return False
            if not count:
                return False
            source.consumed(count)
        return True

    def _socket_error(self, exc: OSError) -> str:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT, None):
            self.log.exception("Socket error processing request.")
        return DROP

    def _failed(self, conn: Connection, exc: Exception) -> str:
        """The app raised instead of answering: 500 when its answer has not begun, else the connection drops."""
        exchange = conn.exchange
        environ = exchange.environ if exchange is not None else None
        self.log.exception("Error handling request %s", environ.get("RAW_URI", "")[:200] if environ is not None else "")
        # the exchange's Response was made before its app ran
        if exchange is not None and (cast(Response, exchange.resp).headers_sent or exchange.out):
            return DROP
        status = "500 Internal Server Error"
        error = BadHead(status, "the request could not be answered")
        return self._refuse(conn, exchange, error)

    def _refuse(self, conn: Connection, exchange: Optional[Exchange], error: BadHead) -> str:
        """Answer ``error`` (a BadHead) with the JSON error document, and close after it."""
        conn.exchange = None
        if exchange is not None:
            resp = cast(Response, exchange.resp)  # _failed's: made before its app ran
            resp.status, resp.status_code = error.status, int(error.status[:3])
            exchange.close(self)
        else:
            self.log.debug("refused a request head: %s", error.message)
        body = _error_body(error.status, error.message)
        try:
            conn.sock.sendall(_error_head(error.status, body) + body)
        except OSError:
            return DROP
        return CLOSE

    def _close_gracefully(self, conn: Connection, now: float, limit: Optional[float] = None) -> None:
        """Half-close, then wait (in the poller) for the client to close, so it reads the whole answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.closing = True
        conn.deadline = now + CLOSE_LINGER if limit is None else min(now + CLOSE_LINGER, limit)
        self._arm(conn, conn.fd, READ)

    def _drain(self, conn: Connection) -> None:
        while True:
            try:
                count = conn.sock.recv_into(_DISCARD, len(_DISCARD), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                self._arm(conn, conn.fd, READ)
                return
            except OSError:
                count = 0
            conn.drained += count
            if not count or conn.drained >= CLOSE_DRAIN_MAX:
                self._close(conn)
                return

    def _close(self, conn: Connection) -> None:
        """The one place a connection ends: unregistered, its exchange released, closed, uncounted."""
        if conn.closed:
            return
        conn.closed = True
        conn.armed = False
        if conn.polled is not None:
            self.targets.pop(conn.polled, None)
            try:
                self.poller.unregister(conn.polled)
            except (OSError, ValueError):
                pass
        exchange = conn.exchange
        if exchange is not None:
            conn.exchange = None
            exchange.close(self)
        util.close(conn.sock)
        self.conns.discard(conn)
        balance.hold(self.slot, len(self.conns))
        if not self.accepting and self.alive and now_accepting(self):
            self._set_accepting(True)

    def _wake_main(self) -> None:
        try:
            os.write(self.PIPE[1], b".")
        except (BlockingIOError, InterruptedError):
            pass  # a wake-up is pending already

    def access(self, exchange: Exchange) -> None:
        """gunicorn's access log line for an exchange (only when an access log is configured)."""
        elapsed = time.monotonic() - exchange.started
        self.log.access(exchange.resp, _LoggedRequest(exchange.head), exchange.environ, timedelta(seconds=elapsed))


def _take_armed(conn: Connection) -> bool:
    """Take ``conn`` if the poller still has it (it is armed); the caller holds the worker's lock.
    True for the one caller that gets it."""
    if not conn.armed:
        return False
    conn.armed = False
    return True


def now_accepting(worker: PyaiWorker) -> bool:
    """Whether a worker that stopped accepting at its connection cap may accept again."""
    return (
        worker.stopping_since is None
        and time.monotonic() >= worker.accept_paused_until
        and len(worker.conns) < worker.cfg.worker_connections
    )


class _Turn:
    """One serving thread, as the main thread watches it: since when it is in a step (None while it
    waits), and whether it was passed over (another thread got a turn because this one stalled)."""

    __slots__ = ("since", "passed_over", "pending")

    def __init__(self) -> None:
        self.since: Optional[float] = None
        self.passed_over = False
        self.pending: List[Target] = []  # the rest of its last poll's batch, last first (see PyaiWorker._next_target)


class _LoggedRequest:
    """What gunicorn's access log reads of a request: its header fields."""

    __slots__ = ("headers",)

    def __init__(self, head: Head) -> None:
        self.headers = [(name.decode("latin-1").upper(), value.decode("latin-1")) for name, value in head.fields]


def _tell(conn: Connection, status: str, message: str) -> None:
    """The JSON error document of ``status``, best effort, without waiting: the connection closes next."""
    body = _error_body(status, message)
    try:
        conn.sock.send(_error_head(status, body) + body, socket.MSG_DONTWAIT)
    except OSError:
        pass


def _error_body(status: str, message: str) -> bytes:
    return json.dumps(error_document(status, message, f"request: {status}")).encode()


def _error_head(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
