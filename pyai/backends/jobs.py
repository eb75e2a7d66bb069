"""A small bounded pool for background work of a worker process (stages, recalls).

At most ``size`` daemon threads per process run jobs; a job has a key (the
file's path) and a key is queued or running at most once, so asking again for
a file already on its way costs nothing: this is the one "stage once" registry
of every backend.  Jobs beyond the threads wait in order, but at most
``limit`` keys are queued or running: a flood of requests for distinct files
cannot grow the queue without bound; a job refused then is not remembered and
its file is simply asked for again later.  Threads end when the queue is empty
and are daemons, so a worker never waits for a tape on its way out.  After a
fork the child starts afresh (threads do not survive a fork).
"""

import collections
import logging
import os
import threading
from typing import Callable, Deque, Hashable, Set, Tuple

log = logging.getLogger("pyai")

# Keys queued or running per pool: far more stages than a tape library works on
# at once, few enough that the queue stays a few hundred kilobytes.
DEFAULT_LIMIT = 4096


class KeyedPool:
    def __init__(self, size: int, name: str, limit: int = DEFAULT_LIMIT):
        self.size = size
        self.name = name
        self.limit = limit
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._keys: Set[Hashable] = set()  # queued or running
        self._queue: Deque[Tuple[Hashable, Callable[[], object]]] = collections.deque()
        self._threads = 0
        self._full = False  # refusing jobs (logged once per spell)

    def start(self, key: Hashable, job: Callable[[], object]) -> bool:
        """Run ``job()`` on the pool unless ``key`` is queued or running, or ``limit`` keys are;
        True when queued now."""
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            if key in self._keys:
                return False
            if len(self._keys) >= self.limit:
                if not self._full:
                    self._full = True
                    log.warning(
                        "%d %s jobs are queued or running; more are refused until some finish",
                        len(self._keys),
                        self.name,
                    )
                return False
            self._full = False
            self._keys.add(key)
            self._queue.append((key, job))
            if self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return True

    def busy(self, key: Hashable) -> bool:
        with self._lock:
            return self._pid == os.getpid() and key in self._keys

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._threads -= 1
                    return
                key, job = self._queue.popleft()
            try:
                job()
            except Exception:  # noqa: BLE001 - one failed job must not stop the others
                log.exception("a background %s job failed", self.name)
            finally:
                with self._lock:
                    self._keys.discard(key)
