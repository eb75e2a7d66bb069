"""The archive service: the rules every backend obeys.

It validates ids, keeps the archive write-once (unless configured otherwise),
drives an upload from request body to published file, and answers the
questions HEAD asks.  It knows nothing about HTTP; ``pyai.web`` parses each
request into the values handed down here (an ``Upload`` for a PUT).
"""

import dataclasses
import errno
import itertools
import logging
from typing import Callable, Collection, Generator, Iterable, Iterator, Optional, Protocol, Tuple, cast

from pyai.archive import checksums
from pyai.archive.ids import InvalidId
from pyai.archive.inflight import InFlight
from pyai.archive.unkept import Unkept
from pyai.backends.base import (
    Backend,
    Checksums,
    CollectionStatus,
    FileStatus,
    Member,
    PathBackend,
    Reader,
    Writer,
    no_collection,
)
from pyai.config import Config
from pyai.errors import (
    ArchiveError,
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    describe,
)
from pyai.ops import metrics

# Checksums strong enough to say "these are the stored bytes" (no crafted collisions).
RETRY_ALGORITHMS = frozenset(checksums.STRONG)
# Files a worker process hashes at once for digests asked for but not stored;
# asks beyond that (or for a file being hashed already) answer without them.
COMPUTE_AT_ONCE = 2
log = logging.getLogger("pyai")


@dataclasses.dataclass(frozen=True)
class Upload:
    """What a PUT asks for, parsed once by the web layer."""

    ident: str
    length: Optional[int]  # None: the body's end is only known when it comes (chunked)
    mtime: float  # the time to store as the file's mtime
    expected: Checksums  # the client's {algorithm: digest} of the body, checked before anything is stored
    algorithms: Tuple[str, ...]  # the digests to compute while receiving (``Archive.wanted_algorithms``)


class Body(Protocol):
    """A request body as ``Archive.storing`` receives it (``pyai.web.receive.RequestBody``)."""

    received: int  # bytes received so far

    def receive(self, writer: Writer, patience: Optional[float]) -> bool: ...  # True once the whole body is in
    def digests(self) -> Checksums: ...  # of the bytes received, the algorithms it was asked for


class Archive:
    def __init__(self, config: Config, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self._computing = InFlight(COMPUTE_AT_ONCE)  # paths being hashed on demand in this process
        self._unkept = Unkept()  # digests computed here that the backend could not keep
        # namespace = paths: the backend's collections (every backend has them)
        self.tree: Optional[PathBackend] = cast(PathBackend, backend) if config.namespace == "paths" else None

    def check(self) -> None:
        """Raise BackendUnavailable when the storage cannot serve requests now."""
        self.backend.check()

    def path(self, ident: str) -> str:
        try:
            return self.backend.path_for(ident)
        except InvalidId as exc:
            raise BadRequest(f"invalid id: {exc}", detail="invalid id") from None

    def status(self, ident: str) -> Optional[FileStatus]:
        """The FileStatus of the id, or None when it holds no file (never stages)."""
        return self.backend.status(self.path(ident))

    def open(self, ident: str) -> Reader:
        try:
            return self.backend.open_read(self.path(ident))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("no file is stored under this id", detail="not found") from None

    def storing(
        self,
        upload: Upload,
        body: Body,
        patience: Optional[float] = None,
        before_body: Optional[Callable[[], object]] = None,
    ) -> Generator[None, None, int]:
        """Store the body of ``upload``: a generator returning the number of bytes stored.

        ``body`` receives into a writer (``receive(writer, patience)``) and
        computes ``upload.algorithms``; a body that does not match
        ``upload.expected`` is refused (400) and nothing is stored.  With
        ``patience``, whenever no byte came for that many seconds it yields
        (None) so the caller can wait for the client without a thread;
        without, it never yields.  ``before_body`` is called once the request
        is accepted, before the first byte is read.

        Write-once: an id that holds a file is 409 before any byte is read,
        except when the body may be a retry of the stored bytes (same announced
        size, a stored strong checksum): that body is received, and when it is
        the stored bytes the answer is 201 with nothing changed (API.md: "a PUT
        whose bytes equal what is stored may answer 201").  This is how a
        client recovers from a 500 that said its file was stored but not
        known to be durable.
        """
        path = self.path(upload.ident)
        replace = self.config.allow_overwrite
        if not replace and self.backend.exists(path) and not self._may_be_a_retry(path, upload):
            raise id_holds_a_file()
        try:
            writer = self.backend.create(path, size_hint=upload.length, replace=replace, parents=self.tree is None)
        except (FileNotFoundError, NotADirectoryError):
            if self.tree is None:
                raise
            raise no_collection() from None  # paths: PUT never makes collections (WebDAV)
        with writer:
            if before_body is not None:
                before_body()  # the 100 Continue: only once the file can be stored
            while not body.receive(writer, patience):
                yield
            size = body.received
            computed = body.digests()
            wrong = checksums.mismatch(upload.expected, computed)
            if wrong:
                metrics.count_checksum_mismatch(wrong)
                raise BadRequest(
                    f"the body does not match the {checksums.RFC9530_NAMES[wrong]} digest the client sent;"
                    " nothing was stored",
                    detail=f"{wrong} digest mismatch",
                )
            try:
                # every digest computed is kept: the configured ones and those the client sent (checked)
                writer.commit(upload.mtime, computed or None)
            except Conflict:
                if replace or not self._holds(path, size, computed):
                    raise
                self.backend.confirm_durable(path)  # the 201 of the first PUT may never have been said
        return size

    def _may_be_a_retry(self, path: str, upload: Upload) -> bool:
        """Whether the stored file could be the bytes coming: worth receiving them to compare
        (same announced size, and a strong stored checksum the upload computes)."""
        if upload.length is None:
            return False
        strong = checksums.strongest(self.backend.checksums(path))
        if strong is None or strong[0] not in upload.algorithms:
            return False
        return self.backend.stored_size(path) == upload.length

    def _holds(self, path: str, size: int, computed: Checksums) -> bool:
        """Whether the file stored at ``path`` has these bytes (by size and a strong checksum)."""
        strong = checksums.strongest(self.backend.checksums(path))
        if strong is None or computed.get(strong[0]) != strong[1]:
            return False
        return self.backend.stored_size(path) == size

    def wanted_algorithms(self, expected: Iterable[str]) -> Tuple[str, ...]:
        """The digests to compute while receiving: the configured ones and the client's."""
        names = set(expected) | set(self.config.checksums)
        return tuple(name for name in checksums.ALGORITHMS if name in names)

    def checksums(self, path: str, reader: Optional[Reader] = None) -> Checksums:
        """The stored ``{algorithm: digest}`` of the file at ``path`` (open as ``reader``), {} when none."""
        return reader.checksums() if reader is not None else self.backend.checksums(path)

    def primary_digest(self, stored: Checksums) -> Checksums:
        """``{name: digest}`` of the one stored digest a response carries when the client asks for
        none: the first configured algorithm stored, else the strongest, else any; {} without."""
        for name in tuple(self.config.checksums) + checksums.ALGORITHMS:
            if name in stored:
                return {name: stored[name]}
        return {}

    def digests(self, ident: str, wanted: Iterable[str]) -> Checksums:
        """``{name: digest}`` of the algorithms ``wanted`` (pyai names, e.g. from a Want-Digest)
        of the file under ``ident``: stored ones, and those computed now (see ``digests_at``).
        NotFound when the id holds no file.  For PROPFIND and anything else that has an id."""
        path = self.path(ident)
        status = self.backend.status(path)
        if status is None:
            raise NotFound("no file is stored under this id", detail="not found")
        return self.digests_at(path, wanted, status=status)

    def digests_at(
        self, path: str, wanted: Iterable[str], reader: Optional[Reader] = None, status: Optional[FileStatus] = None
    ) -> Checksums:
        """``{name: digest}`` of the ``wanted`` algorithms of the stored file at ``path`` (open as
        ``reader``, when it is; its FileStatus, when known).

        A wanted digest that is not stored is computed from the stored bytes,
        once, and kept with the others, so the next ask reads nothing (where
        keeping it fails, this process remembers it: see pyai.archive.unkept) -- but
        only when the file is on disk (a file on tape is never staged for it),
        at most ``[archive] digest_compute_max`` bytes, not already being
        hashed by this process, and while fewer than COMPUTE_AT_ONCE files
        are; otherwise the digest is simply not in the answer.  The
        configured algorithms the file lacks are computed in the same pass."""
        wanted = [name for name in wanted if name in checksums.DIGEST_SIZES]
        stored = self.checksums(path, reader)
        if any(name not in stored for name in wanted):
            stored = self._compute_missing(path, wanted, stored, status)
        return {name: stored[name] for name in wanted if name in stored}

    def _compute_missing(
        self, path: str, wanted: Collection[str], stored: Checksums, status: Optional[FileStatus]
    ) -> Checksums:
        try:
            status = status or self.backend.status(path)
        except ArchiveError:  # e.g. the sideband database is down: whether it is on disk is unknown
            return stored
        limit = self.config.digest_compute_max
        if status is None or status.media != "disk" or (limit and status.size > limit):
            return stored
        stored = {**self._unkept.get(status), **stored}
        if all(name in stored for name in wanted):
            return stored  # computed before and remembered: nothing to read
        names = [name for name in checksums.ALGORITHMS if name not in stored]
        names = [name for name in names if name in wanted or name in self.config.checksums]
        with self._computing.claim(path) as claimed:
            if not claimed:
                return stored
            try:
                reader = self.backend.open_read(path)
            except (OSError, ArchiveError):
                return stored
            try:
                stored = reader.checksums()  # another process may have kept them meanwhile
                names = [name for name in names if name not in stored]
                if not names:
                    return stored
                computed = checksums.compute(reader.read, names)
                try:
                    return self.backend.add_checksums(path, reader, computed)
                except OSError as exc:  # the digests are right, only not kept
                    log.warning("could not keep the digests computed from %s: %s", path, describe(exc))
                    self._remember(path, reader, computed)
                    return {**computed, **stored}
            except OSError as exc:
                log.warning("could not compute the digests of %s: %s", path, describe(exc))
                return stored
            finally:
                reader.close()

    def _remember(self, path: str, reader: Reader, computed: Checksums) -> None:
        """Remember ``computed`` under the status the file has now (a failed keep may have changed
        its ctime), if that still is the file ``reader`` holds open (whose inode no other file can
        take meanwhile)."""
        try:
            status = self.backend.status(path)
        except (OSError, ArchiveError):
            return
        if status is not None and status.etag == reader.etag:
            self._unkept.remember(status, computed)

    def stage(self, ident: str) -> bool:
        """Ask for the file on disk; True when it is there now, False while it is staging."""
        path = self.path(ident)
        try:
            on_disk = self.backend.stage(path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no file is stored under this id", detail="not found") from None
        metrics.pacifica_stage_asked(path, on_disk)
        return on_disk

    def move(self, ident: str, source: str) -> None:
        """Move the server-side file ``source`` under the id (PATCH)."""
        path = self.path(ident)
        if self.backend.exists(path):
            raise Conflict("the id already holds a file", detail="id already holds a file")
        try:
            self.backend.move(source, path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("the source file does not exist", detail="source not found") from None
        except PermissionError:
            raise Forbidden("the archive may not move the source file", detail="source not movable") from None
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):
                raise BadRequest("the source path cannot be resolved", detail="bad source path") from None
            raise

    def delete(self, ident: str) -> None:
        try:
            self.backend.delete(self.path(ident))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("no file is stored under this id", detail="not found") from None


# -- collections (namespace = paths) ----------------------------------------------


class Namespace:
    """The rules of ``namespace = paths`` beyond files: collections, renames, listings.

    An id here is a path (``a/b/name``, see pyai.archive.ids.parse_path); the
    root collection is the id "".  Nothing is ever removed recursively, and a
    rename keeps the archive write-once unless ``allow_overwrite``.
    """

    def __init__(self, archive: Archive) -> None:
        if archive.tree is None:
            raise ValueError("the archive does not store paths")
        self.archive = archive
        self.tree = archive.tree
        self.max_listing = archive.config.max_listing

    def path(self, ident: str) -> str:
        return self.tree.root if ident == "" else self.archive.path(ident)

    def collection(self, ident: str) -> Optional[CollectionStatus]:
        """The status of the collection ``ident``, None when there is none."""
        return self.tree.collection(self.path(ident))

    def make_collection(self, ident: str) -> None:
        """MKCOL: one collection; 405 when the name is taken, 409 when its parent is missing."""
        if ident == "":
            raise taken()
        try:
            self.tree.make_collection(self.path(ident))
        except FileExistsError:
            raise taken() from None
        except (FileNotFoundError, NotADirectoryError):
            raise no_collection() from None

    def remove_collection(self, ident: str) -> None:
        """DELETE of a collection: only an empty one (409 otherwise); never the root."""
        if ident == "":
            raise Forbidden("the root collection is never removed", detail="root not removable")
        try:
            self.tree.remove_collection(self.path(ident))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no file or collection is stored here", detail="not found") from None
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
            raise Conflict(
                "the collection is not empty: the archive removes nothing recursively", detail="collection not empty"
            ) from None

    def rename(self, ident: str, destination: str, overwrite: bool) -> bool:
        """MOVE of the stored file ``ident`` to ``destination``; True when it replaced a file there.

        A taken destination is 412 with ``overwrite`` False; with it True, 409
        under write-once, else replaced atomically."""
        source, target = self.path(ident), self.path(destination)
        if source == target:
            raise Forbidden("a file cannot be moved onto itself", detail="move onto itself")
        if not self.archive.backend.exists(source):
            if self.tree.collection(source) is not None:
                raise Forbidden("collections are not moved, only files", detail="move of a collection")
            raise NotFound("no file is stored under this id", detail="not found")
        onto_collection = self.tree.collection(target) is not None
        taken_now = onto_collection or self.archive.backend.exists(target)
        if taken_now and not overwrite:
            raise destination_taken()
        replace = overwrite and self.archive.config.allow_overwrite and not onto_collection
        if taken_now and not replace:
            raise write_once()
        try:
            self.tree.rename(source, target, replace=replace)
        except (FileExistsError, IsADirectoryError):  # taken meanwhile
            raise (write_once() if overwrite else destination_taken()) from None
        except (FileNotFoundError, NotADirectoryError):
            if self.archive.backend.exists(source):
                raise no_collection() from None
            raise NotFound("no file is stored under this id", detail="not found") from None
        return taken_now

    def members(self, ident: str) -> Iterator[Member]:
        """The members of the collection ``ident``, one by one (never all in memory); 507 when
        there are more than ``max_listing``, told before the first is given."""
        path = self.path(ident)
        count = sum(1 for _ in itertools.islice(self.tree.members(path, self.max_listing), self.max_listing + 1))
        if count > self.max_listing:
            raise InsufficientStorage(
                f"the collection holds more than {self.max_listing} members, more than a listing gives"
                " ([archive] max_listing)",
                detail="listing over max_listing",
            )
        return itertools.islice(self.tree.members(path, self.max_listing), self.max_listing)

    def space(self) -> Optional[Tuple[int, int]]:
        """(bytes used, bytes available): RFC 4331's quota properties; None when not known."""
        return self.tree.space()


def taken() -> MethodNotAllowed:
    return MethodNotAllowed(
        "something already has this name: a collection is made only where nothing is", detail="name taken"
    )


def id_holds_a_file() -> Conflict:
    """A PUT's (or a COPY pull's) 409 under write-once."""
    return Conflict("the id already holds a file and the archive is write-once", detail="id already holds a file")


def write_once() -> Conflict:
    return Conflict("the destination holds a file and the archive is write-once", detail="destination holds a file")


def destination_taken() -> PreconditionFailed:
    return PreconditionFailed("the destination exists and the request says Overwrite: F", detail="destination exists")
