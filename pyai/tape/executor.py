"""The execution of stage requests: one daemon thread per worker process, over the shared store.

The thread claims running files from the store (a conditional UPDATE: one
process wins each, for ``[tape] lease`` seconds, renewed while it holds them),
asks the backend for each with the very call the Pacifica ``POST /<id>`` makes
(``backend.stage``: the backend's per-process pool runs each file's stage once,
whoever asked), and then looks at it with growing pauses until it is on disk
(COMPLETED), gone or failed (FAILED), or cancelled through the API (it is then
dropped).  A worker or instance that dies leaves leases that expire: another
takes its files over, and asking the backend again is harmless (a stage on
its way is not started twice).

Bounded: at most ``[tape] workers`` files held per process, one thread, waits
on an Event with a timeout (a new request in this process wakes it), and
looks at a file at most every ``[tape] max_poll_interval`` seconds once its
pauses have grown.  The same thread forgets finished requests once they are
``[tape] request_expiry`` old (a sweep at most every minute, in bounded
batches).  The thread starts lazily and again after a fork (threads
do not survive one), as ``pyai.backends.jobs`` does.
"""

import atexit
import dataclasses
import errno
import logging
import os
import secrets
import socket
import threading
import time
from typing import Dict, Optional, Tuple, cast

from pyai.backends.base import Backend
from pyai.config import Config
from pyai.errors import STORAGE_UNREACHABLE, BackendUnavailable
from pyai.ops import metrics
from pyai.tape.models import COMPLETED, FAILED
from pyai.tape.store import EXPIRY_BATCH, Store

log = logging.getLogger("pyai")
FIRST_PAUSE = 0.5  # seconds before the first look at a file that is staging
GROWTH = 1.5
IDLE_CLAIM_EVERY = 2.0  # seconds between looks for work other processes or instances submitted
ERROR_PAUSE = 5.0  # after the store failed
SWEEP_EVERY = 60.0  # seconds between two sweeps of expired requests (sooner with a shorter expiry)
SWEEP_BATCHES = 500  # transactions of one sweep (EXPIRY_BATCH requests each), other writers between them


@dataclasses.dataclass
class Held:
    target: str
    started_at: int
    due: float  # monotonic time of the next look
    pause: float


class Executor:
    def __init__(self, store: Store, backend: Backend, config: Config) -> None:
        self.store = store
        self.backend = backend
        self.capacity = config.tape_workers
        self.lease = max(config.tape_lease, 1.0)
        self.max_pause = max(config.tape_max_poll_interval, FIRST_PAUSE)
        self.stage_timeout = config.tape_stage_timeout
        self.expiry = config.tape_request_expiry
        self.sweep_every = min(SWEEP_EVERY, self.expiry)
        self._lock = threading.Lock()
        self._pid: Optional[int] = None
        self._wake = threading.Event()
        self._held: Dict[int, Held] = {}  # this process's files: id -> Held (the thread's, read at exit)
        self.name = ""

    def ensure_running(self) -> None:
        """Start this process's thread unless it runs (cheap: called on every Tape API request)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._wake = threading.Event()
            self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
            self._held = {}
            threading.Thread(target=self._run, args=(self._held,), name="tape-executor", daemon=True).start()
            atexit.register(self._let_go, os.getpid())

    def _let_go(self, pid: int) -> None:
        """At a clean exit, hand the files held back at once (a crash leaves them to their leases)."""
        if pid != os.getpid() or not self._held:
            return
        try:
            self.store.let_go(self.name, list(self._held))
        except Exception:  # noqa: BLE001 - on the way out: the leases expire anyway
            log.warning("could not hand back %d files of stage requests; their leases expire", len(self._held))

    def wake(self) -> None:
        self._wake.set()

    def _run(self, held: Dict[int, Held]) -> None:
        claimed_at = swept_at = float("-inf")
        renewed_at = time.monotonic()
        while True:
            now = time.monotonic()
            pause = IDLE_CLAIM_EVERY
            try:
                if self.store.exists():
                    if now - renewed_at >= self.lease / 3 and held:
                        kept = self.store.still_held(self.name, held, time.time(), self.lease)
                        for file_id in set(held) - kept:  # cancelled, deleted or taken over
                            del held[file_id]
                        renewed_at = now
                    woken = self._wake.is_set()
                    self._wake.clear()
                    if len(held) < self.capacity and (woken or now - claimed_at >= IDLE_CLAIM_EVERY):
                        self._claim(held)
                        claimed_at = now
                    self._look(held)
                    if now - swept_at >= self.sweep_every:
                        swept_at = now
                        self._sweep()
                    if held:
                        pause = min([pause, self.lease / 3] + [item.due - time.monotonic() for item in held.values()])
            except Exception:  # noqa: BLE001 - the thread must outlive a failing store or backend
                log.exception("the tape executor failed; it tries again in %g s", ERROR_PAUSE)
                pause = ERROR_PAUSE
            self._wake.wait(max(pause, 0.05))

    def _sweep(self) -> None:
        """Forget the requests finished ``request_expiry`` ago: a few bounded transactions."""
        for _ in range(SWEEP_BATCHES):
            now = time.time()
            if self.store.expire(now - self.expiry, now) < EXPIRY_BATCH:
                return

    def _claim(self, held: Dict[int, Held]) -> None:
        rows = self.store.claim(self.name, self.capacity - len(held), time.time(), self.lease)
        # A running file has a target: a path that names no id is stored FAILED (TapeService._file_row).
        if self.backend.name == "hpss":
            rows.sort(key=lambda row: cast(str, row.target))  # neighbouring files first: what HPSS orders best
        now = time.monotonic()
        for row in rows:
            held[row.id] = Held(cast(str, row.target), row.started_at or int(time.time()), now, FIRST_PAUSE)

    def _look(self, held: Dict[int, Held]) -> None:
        now = time.monotonic()
        for file_id, item in list(held.items()):
            if item.due > now:
                continue
            outcome = self._outcome(item)
            if outcome is None:
                item.pause = min(item.pause * GROWTH, self.max_pause)
                item.due = time.monotonic() + item.pause
                continue
            state, error = outcome
            if self.store.finish(self.name, file_id, state, int(time.time()), error):  # not cancelled meanwhile
                waited = time.time() - item.started_at if state == COMPLETED else None
                metrics.count_stage(metrics.TAPE, state.lower(), waited)
            del held[file_id]

    def _outcome(self, item: Held) -> Optional[Tuple[str, Optional[str]]]:
        """(state, error) once the file is done, None while it stages (or the storage is down)."""
        try:
            status = self.backend.status(item.target)
            if status is None:
                return FAILED, "no file is stored under this id"
            if status.size == 0:
                return FAILED, "the file is empty: there is nothing on tape to stage"
            if status.media == "disk" or self.backend.stage(item.target):
                return COMPLETED, None
        except BackendUnavailable:
            return None  # down for now: look again later
        except FileNotFoundError:
            return FAILED, "no file is stored under this id"
        except OSError as exc:
            if exc.errno in STORAGE_UNREACHABLE:
                return None
            # an OSError raised without an errno has no symbol: "error", as before
            symbol = "error" if exc.errno is None else errno.errorcode.get(exc.errno, "error")
            return FAILED, f"the storage failed: {exc.strerror or symbol}"
        if self.stage_timeout and time.time() - item.started_at > self.stage_timeout:
            return FAILED, "the file did not reach disk within the stage timeout"
        return None
