"""Work a process does for one path at a time, and only so much of it at once.

Hashing a stored file for a digest a client asked for (``Archive.digests_at``)
is claimed here: a second ask for the same path while the first computes, or
any ask while the process already hashes its share of files, is told no and
answers without the digest, instead of reading the file again or tying up
another thread -- many HEADs with Want-Digest on one huge file cost one read.
"""

import contextlib
import threading
from typing import Iterator


class InFlight:
    """Paths claimed by this process's threads, at most ``limit`` at once."""

    def __init__(self, limit: int):
        self.limit = limit
        self._paths: set = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def claim(self, path: str) -> Iterator[bool]:
        """True inside when this thread has ``path`` to itself, False when it must skip it."""
        with self._lock:
            claimed = path not in self._paths and len(self._paths) < self.limit
            if claimed:
                self._paths.add(path)
        try:
            yield claimed
        finally:
            if claimed:
                with self._lock:
                    self._paths.discard(path)
