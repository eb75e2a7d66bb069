"""The instance's lifecycle, run by the gunicorn master: drain on TERM, and sweeps while it serves.

Drain.  On TERM the instance first turns unready: ``/readyz`` answers 503 in
every worker at once (one byte of memory the master shares with each worker it
forks: ``pyai.ops.drain``), while everything else is served as before for ``drain_delay`` seconds,
long enough for a load balancer's health checks to see it and send new
requests elsewhere.  Then gunicorn's graceful stop runs: the listeners close,
idle connections close, and transfers in progress finish within
``graceful_timeout``.  A TERM during the drain changes nothing; INT and QUIT
stop at once, as in gunicorn.

Sweeps.  Besides the start-up sweep, the master sweeps every ``sweep_interval``
seconds, in a child process of its own so the arbiter never waits on a walk of
the archive.  When a worker ends while the instance serves (killed, crashed),
the next sweep comes ``sweep_min_age`` after it: the dead uploads' temporary
files are old enough for it by then.  So does one after the start (with
``sweep_on_start``): a restart right after the whole instance was killed finds
its dead uploads' files too young for the start-up sweep.  No sweep takes a
live upload's file, whatever its age (see pyai.backends.tempfiles).

``install(server)`` hooks this into gunicorn's arbiter (from ``when_ready``);
``worker_exited(server)`` is called from ``child_exit``.
"""

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from pyai.errors import describe
from pyai.ops import drain

if TYPE_CHECKING:
    from pyai.backends.base import Backend
    from pyai.config import Config

SWEEP_SLACK = 1.0  # after sweep_min_age, so a dead upload's file is surely old enough

log = logging.getLogger("pyai")


class Log(Protocol):
    """What a sweep logs to: gunicorn's log (the master's), or a logging.Logger."""

    def info(self, msg: str, *args: object) -> None: ...

    def warning(self, msg: str, *args: object) -> None: ...


class Lifecycle:
    """What the master adds to gunicorn's arbiter: the drain and the sweeps."""

    def __init__(self, server: Any, config: "Config") -> None:  # server: gunicorn's Arbiter
        self.server = server
        self.config = config
        self.drain_ends: Optional[float] = None  # monotonic time the drain ends, once a TERM came
        self.sweeper: Optional[int] = None  # pid of the sweep running now
        interval = config.sweep_interval
        now = time.monotonic()
        self.next_sweep: Optional[float] = now + interval if interval else None
        if config.sweep_on_start:
            # The start-up sweep left what was younger than sweep_min_age: the files of
            # uploads a killed instance (SIGKILL, power loss) was receiving a moment ago.
            self._sweep_by(now + config.sweep_min_age + SWEEP_SLACK)
        self._stop: Callable[[], None] = server.handle_term
        self._manage: Callable[[], None] = server.manage_workers

    def install(self) -> None:
        self.server.handle_term = self.handle_term
        self.server.manage_workers = self.manage_workers

    # -- drain -------------------------------------------------------------------

    def handle_term(self) -> None:
        now = time.monotonic()
        if self.drain_ends is None:
            delay = self.config.drain_delay
            if delay <= 0:
                self._stop()  # raises StopIteration: gunicorn's graceful stop
            drain.begin()
            self.drain_ends = now + delay
            self.server.log.info("draining: /readyz says 503 for %g s, then the graceful stop", delay)
            # the TERM that ends the drain comes as a signal: every gunicorn's arbiter queues those its own way
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
            timer.daemon = True
            timer.start()
            return
        if now >= self.drain_ends:
            self._stop()
        # a TERM during the drain: the drain goes on

    # -- sweeps ------------------------------------------------------------------

    def manage_workers(self) -> None:
        self._manage()
        now = time.monotonic()
        if self.next_sweep is not None and now >= self.next_sweep and not self._sweeping():
            self.sweeper = self._fork_sweep()
            interval = self.config.sweep_interval
            self.next_sweep = now + interval if interval else None

    def worker_exited(self) -> None:
        """A worker ended: unless the instance is stopping, sweep what it may have left."""
        if self.drain_ends is not None or not self.server.LISTENERS:
            return  # stopping (or reloading into a stop): the next start sweeps
        self._sweep_by(time.monotonic() + self.config.sweep_min_age + SWEEP_SLACK)

    def _sweep_by(self, due: float) -> None:
        """Bring the next sweep forward to ``due`` (monotonic) at the latest."""
        self.next_sweep = due if self.next_sweep is None else min(self.next_sweep, due)

    def _sweeping(self) -> bool:
        if self.sweeper is None:
            return False
        try:
            done, _ = os.waitpid(self.sweeper, os.WNOHANG)
        except ChildProcessError:
            done = self.sweeper  # the arbiter's reaping loop (waitpid(-1)) took it first
        if done:
            self.sweeper = None
        return self.sweeper is not None

    def _fork_sweep(self) -> int:
        pid = os.fork()
        if pid:
            return pid
        status = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)  # the arbiter's handlers are not this process's
            status = sweep(self.config, self.server.log)
        finally:
            os._exit(status)


def sweep(config: "Config", log: Log, backend: "Optional[Backend]" = None) -> int:
    """One sweep of stale temporary files (with ``backend``, else a new one of ``config``): housekeeping,
    so a failure is a warning.  0, or 1 when it failed."""
    from pyai.backends import create_backend
    from pyai.ops import metrics

    try:
        removed = (backend or create_backend(config)).sweep()
    except Exception as exc:  # noqa: BLE001 - whatever it was, the archive can still serve
        log.warning("the sweep of stale temporary files under %s failed: %s", config.prefix, describe(exc))
        return 1
    if removed:
        log.info("removed %d stale temporary file(s) under %s", removed, config.prefix)
    metrics.count_swept(removed)
    return 0


_installed: Optional[Lifecycle] = None


def install(server: Any, config: "Config") -> None:
    """Hook the drain and the sweeps into ``server`` (gunicorn's arbiter), once per master."""
    global _installed
    if _installed is None or _installed.server is not server:
        _installed = Lifecycle(server, config)
        _installed.install()


def worker_exited(server: Any) -> None:
    if _installed is not None and _installed.server is server:
        _installed.worker_exited()
