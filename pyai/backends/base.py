"""The small protocol every storage backend implements.

A backend is stateless and shared by all threads of a worker: every call gets
what it needs as arguments and every open file belongs to one request.  Paths
are strings in the backend's own namespace (a local path for posix).
"""

import contextlib
import dataclasses
from typing import Iterator, Optional, Protocol

from pyai.errors import Conflict

# Uploads in progress are written under this name prefix, which no id can
# produce (ids never start with "."), so nothing half-written is addressable.
TEMP_PREFIX = ".pyai-tmp-"
# Archived files are read-only: write-once is also what the file system says.
FILE_MODE = 0o444


@contextlib.contextmanager
def publishing(writer):
    """The end of an upload: any failure inside forgets it (``writer.abort()``);
    an id that got a file meanwhile is 409."""
    try:
        yield
    except FileExistsError:
        writer.abort()
        raise Conflict("the id already holds a file", detail="publish: id already holds a file") from None
    except BaseException:
        writer.abort()
        raise


@dataclasses.dataclass(frozen=True)
class FileStatus:
    """What HEAD reports about a stored file."""

    path: str
    size: int
    mtime: float
    ctime: float
    bytes_per_level: tuple
    media: str  # "disk" (readable now), "tape" (needs staging) or "error"


class Reader(Protocol):
    """An open stored file: ``fileno()`` is a real descriptor when the backend has one."""

    size: int
    mtime: float
    etag: str

    def fileno(self) -> int: ...
    def seek(self, offset: int) -> int: ...
    def read(self, size: int) -> bytes: ...
    def checksum(self) -> Optional[tuple]: ...  # the stored (algorithm, digest), None when none
    def close(self) -> None: ...


class Writer(Protocol):
    """A file being received: invisible under its id until ``commit``.

    Used as a context manager: leaving the block without ``commit`` (an error,
    a short body) removes everything written.
    """

    def fileno(self) -> Optional[int]: ...  # None when bytes must go through write()
    def write(self, data) -> None: ...
    def commit(self, mtime: float, checksum: Optional[tuple] = None) -> None: ...  # stores the (algorithm, digest)
    def abort(self) -> None: ...


class Backend(Protocol):
    name: str

    name: str  # the backend type, as configured
    storage: str  # what an error calls the storage ("HPSS")
    retry_after: Optional[float]  # the Retry-After of a 503, when the backend knows one

    def check(self) -> None: ...  # before each request: raise BackendUnavailable when down or too slow
    def path_for(self, ident: str) -> str: ...
    def status(self, path: str) -> Optional[FileStatus]: ...
    def open_read(self, path: str) -> Reader: ...
    def create(self, path: str, *, size_hint: Optional[int], replace: bool) -> Writer: ...
    def exists(self, path: str) -> bool: ...
    def stage(self, path: str) -> bool: ...
    def move(self, source: str, path: str) -> None: ...
    def delete(self, path: str) -> None: ...  # with its stored checksum
    def sweep(self) -> int: ...
    def checksum(self, path: str) -> Optional[tuple]: ...  # the stored (algorithm, digest), None when none
    def stored_paths(self) -> Iterator[str]: ...  # every stored file, for verify --all
