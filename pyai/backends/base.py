"""The small protocol every storage backend implements, and what its parts share.

A backend is stateless and shared by all threads of a worker: every call gets
what it needs as arguments and every open file belongs to one request.  Paths
are strings in the backend's own namespace (a local path for posix).
"""

import abc
import contextlib
import dataclasses
from typing import Dict, Iterator, Optional, Protocol, Tuple, TypeVar, Union

from pyai.errors import Conflict

# Uploads in progress are written under this name prefix, which no id can
# produce (ids never start with "."), so nothing half-written is addressable.
TEMP_PREFIX = ".pyai-tmp-"
# Archived files are read-only: write-once is also what the file system says.
FILE_MODE = 0o444
# A collection made by MKCOL: anyone may list it, only the service writes in it.
COLLECTION_MODE = 0o755

# A file's stored checksums: {algorithm name (pyai.archive.checksums): raw digest}; {} when none.
Checksums = Dict[str, bytes]
# What a writer accepts: the bytes of a body, or a view of a receive buffer.
Bytes = Union[bytes, bytearray, memoryview]
_W = TypeVar("_W", bound="Writer")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is an upload's temporary file (never addressable by an id)."""
    return name.startswith(TEMP_PREFIX)


def id_taken(op: str) -> Conflict:
    """The 409 of a publish (``op``: "publish", "move") that found the id holding a file."""
    return Conflict("the id already holds a file", detail=f"{op}: id already holds a file")


def no_collection() -> Conflict:
    """The 409 of a write (PUT, PATCH, MKCOL, MOVE) under ``namespace = paths`` whose collection is missing."""
    return Conflict(
        "the collection this would be stored in does not exist: make it first (MKCOL)",
        detail="parent collection missing",
    )


@dataclasses.dataclass(frozen=True)
class FileStatus:
    """What HEAD reports about a stored file."""

    path: str
    size: int
    mtime: float
    ctime: float
    bytes_per_level: tuple
    media: str  # "disk" (readable now), "tape" (needs staging) or "error"
    etag: Optional[str] = None  # the ETag GET sends for these bytes (its Reader's), known without opening


@dataclasses.dataclass(frozen=True)
class CollectionStatus:
    """What PROPFIND reports about a collection (a directory of the namespace)."""

    path: str
    mtime: float
    ctime: float


@dataclasses.dataclass(frozen=True)
class Member:
    """One name in a collection's listing: a stored file (with its status) or a collection."""

    name: str
    file: Optional[FileStatus]  # None for a collection
    collection: Optional[CollectionStatus]  # None for a file


class Reader(Protocol):
    """An open stored file: ``fileno()`` is a real descriptor when the backend has one
    (else it raises io.UnsupportedOperation and the bytes come through ``read``)."""

    path: str  # the backend's path of the file
    size: int
    mtime: float
    etag: str
    media: Optional[str]  # where it was when opened, "disk" or "tape"; None when the backend cannot tell for free
    stage_wait: Optional[float]  # seconds opening waited for a stage from tape, None when it did not

    def fileno(self) -> int: ...
    def seek(self, offset: int) -> int: ...
    def read(self, size: int) -> bytes: ...
    def checksums(self) -> Checksums: ...  # the stored {algorithm: digest}, {} when none
    def close(self) -> None: ...


class Writer(abc.ABC):
    """A file being received: invisible under its id until ``commit``.

    Used as a context manager: leaving the block without ``commit`` (an error,
    a short body) removes everything written.  Every backend's writer is one.
    """

    @abc.abstractmethod
    def fileno(self) -> Optional[int]:
        """The descriptor to receive into; None when bytes must go through ``write``."""

    @abc.abstractmethod
    def write(self, data: Bytes) -> None:
        """Append all of ``data``."""

    @abc.abstractmethod
    def commit(self, mtime: float, checksums: Optional[Checksums] = None) -> None:
        """Publish the bytes under the id, stamped ``mtime``, with their {algorithm: digest} when given."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Forget everything written (safe to call more than once, and after ``commit``)."""

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


@contextlib.contextmanager
def publishing(writer: Writer) -> Iterator[None]:
    """The end of an upload: any failure inside forgets it (``writer.abort()``);
    an id that got a file meanwhile is 409."""
    try:
        yield
    except FileExistsError:
        writer.abort()
        raise id_taken("publish") from None
    except BaseException:
        writer.abort()
        raise


# What a backend's readiness probe found, by part ("prefix", "hpss", "sideband_database"): the failure
# (one line naming no server path) or None, and the seconds the part took to answer when it is a server.
Probes = Dict[str, Tuple[Optional[str], Optional[float]]]


class Backend(Protocol):
    """What the archive (pyai.archive.service), the web layer and the admin tools call."""

    name: str  # the backend type, as configured
    storage: str  # what an error calls the storage ("HPSS")
    retry_after: Optional[float]  # the Retry-After of a 503, when the backend knows one
    # Its calls wait on a remote server: each request then lets another thread serve (pyai.serving.may_block).
    waits_remotely: bool

    def check(self) -> None: ...  # before each request: raise BackendUnavailable when down or too slow
    def probe(self) -> Probes: ...  # readiness, asked now (never cached): see Probes
    def path_for(self, ident: str) -> str: ...  # InvalidId for an id this backend cannot store
    def status(self, path: str) -> Optional[FileStatus]: ...  # None when no file is stored (never stages)
    def open_read(self, path: str) -> Reader: ...  # FileNotFoundError when no file is stored
    # parents=False (namespace = paths): FileNotFoundError (or NotADirectoryError) when the file's
    # directory is missing, instead of making it
    def create(
        self, path: str, *, size_hint: Optional[int] = None, replace: bool = False, parents: bool = True
    ) -> Writer: ...
    def exists(self, path: str) -> bool: ...
    def stage(self, path: str) -> bool: ...  # True when on disk now, False while it is staging
    def release(self, path: str) -> None: ...  # no one needs it on disk any more: the disk copy may go
    def move(self, source: str, path: str) -> None: ...  # PATCH
    def delete(self, path: str) -> None: ...  # with its stored checksum
    def sweep(self) -> int: ...  # removes dead uploads' temporary files; how many
    def checksums(self, path: str) -> Checksums: ...  # the stored {algorithm: digest}, {} when none
    # Keep digests computed from the stored bytes beside the stored ones (one atomic replace
    # of the set); returns the whole set.  The file is open as ``reader`` (from open_read).
    def add_checksums(self, path: str, reader: Reader, computed: Checksums) -> Checksums: ...
    def stored_paths(self) -> Iterator[str]: ...  # every stored file, for verify --all
    def stored_size(self, path: str) -> Optional[int]: ...  # never staging, never asking a database
    def confirm_durable(self, path: str) -> None: ...  # StoredNotDurable when it cannot be made durable


class PathBackend(Backend, Protocol):
    """A backend that also stores paths (``namespace = paths``): collections, renames, listings.

    Every call takes the backend paths ``path_for`` gives (a collection's is the
    path of its directory; the root collection's is the prefix).  Errors are the
    OSError subclasses os raises: FileNotFoundError for a missing parent or
    entry, NotADirectoryError for a file where a collection is needed,
    FileExistsError for a taken name, and PermissionError for a symlink met on
    the way (never followed).
    """

    root: str  # the root collection's path (the prefix)

    def collection(self, path: str) -> Optional[CollectionStatus]: ...  # None when no collection is there
    def make_collection(self, path: str) -> None: ...  # one level, durable in its parent
    def remove_collection(self, path: str) -> None: ...  # OSError(ENOTEMPTY) unless empty; durable
    # The stored files and collections in the collection at ``path``, at most ``limit`` + 1 of them
    # (temporary files, sidecars and other dot names are never members), in no particular order.
    def members(self, path: str, limit: int) -> Iterator[Member]: ...
    # Give the stored file ``source`` the name ``path``, replacing a file there only with ``replace``; durable.
    def rename(self, source: str, path: str, *, replace: bool) -> None: ...
    # (bytes used, bytes available) of the storage under the prefix; None when the backend is not told
    # which storage that is (an HPSS without [hpss] quota_cos)
    def space(self) -> Optional[Tuple[int, int]]: ...
