"""Digests computed from a stored file that could not be kept with it, remembered by one process.

A digest a client asks for and the archive does not store is computed from
the stored bytes and kept with the file (an xattr or sidecar, HPSS's
user-defined attributes, the sideband database), so the next ask reads
nothing.  Where keeping it fails (a read-only file system, a file the service
does not own, no room for the xattr, a failed HPSS attribute write) every ask
would read the whole file again: the process remembers those digests instead,
for at most LIMIT files, forgetting the least recently asked first.

An entry is keyed by the file's path, ETag (inode, size, mtime) and ctime, as
its FileStatus tells them: a replaced or changed file has another key, so a
remembered digest is never answered for other bytes.
"""

import collections
import threading
from typing import Dict, Hashable, Optional

from pyai.backends.base import Checksums, FileStatus

# A few hundred bytes each: the memory of a worker's hot files, not of the archive.
LIMIT = 1024


def key_of(status: FileStatus) -> Hashable:
    """What names one version of one stored file."""
    return (status.path, status.etag, status.ctime)


class Unkept:
    """``{key: {algorithm: digest}}`` of at most ``limit`` files, least recently asked forgotten first."""

    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self._digests: "collections.OrderedDict[Hashable, Checksums]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, status: FileStatus) -> Checksums:
        """The digests remembered for this version of the file, {} when none."""
        key = key_of(status)
        with self._lock:
            found: Optional[Dict[str, bytes]] = self._digests.get(key)
            if found is None:
                return {}
            self._digests.move_to_end(key)
            return dict(found)

    def remember(self, status: FileStatus, digests: Checksums) -> None:
        """Add ``digests`` (of the bytes ``status`` describes) to what is remembered of the file."""
        key = key_of(status)
        with self._lock:
            self._digests[key] = {**self._digests.get(key, {}), **digests}
            self._digests.move_to_end(key)
            while len(self._digests) > self.limit:
                self._digests.popitem(last=False)
