"""Group commit for directory fsyncs.

Every published file needs its directory entry on stable storage before the
client hears 201, which is one fsync of the directory.  When many uploads land
in one directory at once (the flat layout puts every file in the prefix), one
fsync that starts after several renames have finished makes all of them
durable: threads that arrive while an fsync runs wait for the next one and
share it, instead of each paying for its own.
"""

import threading
from typing import Callable, Dict, Optional

from pyai import native as fileio


class _Directory:
    __slots__ = ("lock", "published", "durable", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while this directory is being fsynced
        self.published = 0  # renames finished in it so far (a sequence number)
        self.durable = 0  # every rename up to this number is on stable storage
        self.users = 0  # threads between publish and durable: the entry lives while > 0


class DirectorySyncer:
    """``synced(directory)`` after a rename returns once that rename is durable."""

    def __init__(self, fsync_dir: Optional[Callable[[str], None]] = None):
        self._fsync_dir = fsync_dir or fileio.fsync_dir
        self._mutex = threading.Lock()
        self._dirs: Dict[str, _Directory] = {}

    def synced(self, directory: str) -> None:
        with self._mutex:
            state = self._dirs.get(directory)
            if state is None:
                state = self._dirs[directory] = _Directory()
            state.published += 1
            mine = state.published
            state.users += 1
        try:
            with state.lock:
                if state.durable >= mine:
                    return  # an fsync that started after our rename covered it
                with self._mutex:
                    covered = state.published  # all of these renames have finished
                self._fsync_dir(directory)
                state.durable = covered
        finally:
            with self._mutex:
                state.users -= 1
                if state.users == 0:
                    del self._dirs[directory]
