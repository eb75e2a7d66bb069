"""A small bounded pool for background work of a worker process (stages, recalls).

At most ``size`` daemon threads per process run jobs; a job has a key (the
file's path) and a key is queued or running at most once, so asking again for
a file already on its way costs nothing.  Jobs beyond the threads wait in
order.  Threads end when the queue is empty and are daemons, so a worker never
waits for a tape on its way out.  After a fork the child starts afresh (threads
do not survive a fork).
"""

import collections
import logging
import os
import threading

log = logging.getLogger("pyai")


class KeyedPool:
    def __init__(self, size, name):
        self.size = size
        self.name = name
        self._lock = threading.Lock()
        self._reset()

    def _reset(self):
        self._pid = os.getpid()
        self._keys = set()  # queued or running
        self._queue = collections.deque()
        self._threads = 0

    def start(self, key, job):
        """Run ``job()`` on the pool unless ``key`` is queued or running; True when queued now."""
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            if key in self._keys:
                return False
            self._keys.add(key)
            self._queue.append((key, job))
            if self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return True

    def busy(self, key):
        with self._lock:
            return self._pid == os.getpid() and key in self._keys

    def _run(self):
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
