"""The archive service: the rules every backend obeys.

It validates ids, keeps the archive write-once (unless configured otherwise),
drives an upload from request body to published file, and answers the
questions HEAD asks.  It knows nothing about HTTP; ``pyai.web`` parses each
request into the values handed down here (an ``Upload`` for a PUT).
"""

import dataclasses
import errno
from typing import Optional

from pyai.archive import checksums
from pyai.archive.ids import InvalidId
from pyai.errors import BadRequest, Conflict, Forbidden, NotFound

# Checksums strong enough to say "these are the stored bytes" (no crafted collisions).
RETRY_ALGORITHMS = frozenset({"sha256", "sha512"})


@dataclasses.dataclass(frozen=True)
class Upload:
    """What a PUT asks for, parsed once by the web layer."""

    ident: str
    length: Optional[int]  # None: the body's end is only known when it comes (chunked)
    mtime: float  # the time to store as the file's mtime
    expected: dict  # the client's {algorithm: digest} of the body, checked before anything is stored
    algorithms: tuple  # the digests to compute while receiving (``Archive.wanted_algorithms``)


class Archive:
    def __init__(self, config, backend):
        self.config = config
        self.backend = backend

    def check(self):
        """Raise BackendUnavailable when the storage cannot serve requests now."""
        self.backend.check()

    def path(self, ident):
        try:
            return self.backend.path_for(ident)
        except InvalidId as exc:
            raise BadRequest(f"invalid id: {exc}", detail="invalid id") from None

    def status(self, ident):
        """The FileStatus of the id, or None when it holds no file (never stages)."""
        return self.backend.status(self.path(ident))

    def open(self, ident):
        try:
            return self.backend.open_read(self.path(ident))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("no file is stored under this id", detail="not found") from None

    def storing(self, upload, body, patience=None, before_body=None):
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
        if not replace and self.backend.exists(path) and not self._may_be_a_retry(path, upload.length):
            raise Conflict(
                "the id already holds a file and the archive is write-once", detail="id already holds a file"
            )
        if before_body is not None:
            before_body()
        with self.backend.create(path, size_hint=upload.length, replace=replace) as writer:
            while not body.receive(writer, patience):
                yield
            size = body.received
            computed = body.digests()
            wrong = checksums.mismatch(upload.expected, computed)
            if wrong:
                raise BadRequest(
                    f"the body does not match the {checksums.RFC9530_NAMES[wrong]} digest the client sent;"
                    " nothing was stored",
                    detail=f"{wrong} digest mismatch",
                )
            algorithm = self.config.checksum
            try:
                writer.commit(upload.mtime, (algorithm, computed[algorithm]) if algorithm else None)
            except Conflict:
                if replace or not self._holds(path, size, computed):
                    raise
                self.backend.confirm_durable(path)  # the 201 of the first PUT may never have been said
        return size

    def _may_be_a_retry(self, path, length):
        """Whether the stored file could be the ``length`` bytes coming: worth receiving them to compare."""
        stored = self.backend.checksum(path)
        if length is None or stored is None or stored[0] not in RETRY_ALGORITHMS:
            return False
        return stored[0] == self.config.checksum and self.backend.stored_size(path) == length

    def _holds(self, path, size, computed):
        """Whether the file stored at ``path`` has these bytes (by size and a strong checksum)."""
        stored = self.backend.checksum(path)
        if stored is None or stored[0] not in RETRY_ALGORITHMS or computed.get(stored[0]) != stored[1]:
            return False
        return self.backend.stored_size(path) == size

    def wanted_algorithms(self, expected):
        """The digests to compute while receiving: the configured one and the client's."""
        names = set(expected)
        if self.config.checksum:
            names.add(self.config.checksum)
        return tuple(sorted(names))

    def checksum(self, path, reader=None):
        """The stored ``(algorithm, digest)`` of the file at ``path`` (open as ``reader``), or None."""
        return reader.checksum() if reader is not None else self.backend.checksum(path)

    def stage(self, ident):
        """Ask for the file on disk; True when it is there now, False while it is staging."""
        try:
            return self.backend.stage(self.path(ident))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no file is stored under this id", detail="not found") from None

    def move(self, ident, source):
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

    def delete(self, ident):
        try:
            self.backend.delete(self.path(ident))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("no file is stored under this id", detail="not found") from None
