"""The archive service: the rules every backend obeys.

It validates ids, keeps the archive write-once (unless configured otherwise),
drives an upload from request body to published file, and answers the
questions HEAD asks.  It knows nothing about HTTP framing; ``pyai.web.app`` does.
"""

import errno
import time

from pyai.archive import checksums as digests
from pyai.web.dates import parse_http_date
from pyai.errors import BadRequest, Conflict, Forbidden, NotFound
from pyai.archive.ids import InvalidId
from pyai.web.parking import Wait

NOT_FOUND = "File Not Found"
# Checksums strong enough to say "these are the stored bytes" (no crafted collisions).
RETRY_ALGORITHMS = frozenset({"sha256", "sha512"})


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

    def storing(self, ident, body, last_modified=None, expected=None, patience=None, before_body=None):
        """Store the body under the id: a generator returning ``(bytes stored, warning or None)``.

        ``body`` computes the configured checksum and every algorithm of
        ``expected`` (the client's ``{algorithm: digest}``); a body that does
        not match is refused (400) and nothing is stored.  With ``patience``,
        whenever no byte came for that many seconds it yields a
        ``parking.Wait`` so the caller can wait for the client without a
        thread; without, it never yields.  ``before_body`` is called once the
        request is accepted, before the first byte is read.

        Write-once: an id that holds a file is 409 before any byte is read,
        except when the body may be a retry of the stored bytes (same announced
        size, a stored strong checksum): that body is received, and when it is
        the stored bytes the answer is 201 with nothing changed (API.md: "a PUT
        whose bytes equal what is stored may answer 201").  This is how a
        client recovers from a 500 that said its file was stored but not
        known to be durable.
        """
        path = self.path(ident)
        replace = self.config.allow_overwrite
        if not replace and self.backend.exists(path) and not self._may_be_a_retry(path, body):
            raise Conflict("the id already holds a file and the archive is write-once", detail="id already holds a file")
        mtime, warning = _mtime_from(last_modified)
        if before_body is not None:
            before_body()
        with self.backend.create(path, size_hint=body.length, replace=replace) as writer:
            while not body.receive(writer, patience):
                yield Wait(body.fileno(), body.deadline())
            size = body.received
            computed = body.digests()
            wrong = digests.mismatch(expected or {}, computed)
            if wrong:
                raise BadRequest(
                    f"the body does not match the {digests.RFC9530_NAMES[wrong]} digest the client sent; nothing was stored",
                    detail=f"{wrong} digest mismatch",
                )
            algorithm = self.config.checksum
            try:
                writer.commit(mtime, (algorithm, computed[algorithm]) if algorithm else None)
            except Conflict:
                if replace or not self._holds(path, size, computed):
                    raise
                self.backend.confirm_durable(path)  # the 201 of the first PUT may never have been said
        return size, warning

    def _may_be_a_retry(self, path, body):
        """Whether the stored file could be these bytes: worth receiving them to compare."""
        stored = self.backend.checksum(path)
        if body.length is None or stored is None or stored[0] not in RETRY_ALGORITHMS:
            return False
        return stored[0] == self.config.checksum and self.backend.stored_size(path) == body.length

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
        return sorted(names)

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


def status_headers(status):
    """The headers HEAD answers with (cartd reads every one, found or not)."""
    if status is None:
        return {
            "X-Pacifica-Messsage": "File Not found",
            "X-Pacifica-File": NOT_FOUND,
            "X-Content-Length": NOT_FOUND,
            "Last-Modified": NOT_FOUND,
            "X-Pacifica-Ctime": NOT_FOUND,
            "X-Pacifica-Bytes-Per-Level": NOT_FOUND,
            "X-Pacifica-File-Storage-Media": NOT_FOUND,
        }
    return {
        "X-Pacifica-Messsage": "File was found",
        "X-Pacifica-File": status.path,
        "X-Content-Length": str(status.size),
        # epoch seconds, not an HTTP date: cartd calls float() on it
        "Last-Modified": repr(float(status.mtime)),
        "X-Pacifica-Ctime": repr(float(status.ctime)),
        "X-Pacifica-Bytes-Per-Level": repr(tuple(status.bytes_per_level)),
        "X-Pacifica-File-Storage-Media": status.media,
    }


def _mtime_from(header):
    """The mtime to store and a warning when the client's date could not be read."""
    if header is None:
        return time.time(), None
    stamp = parse_http_date(header)
    if stamp is None:
        return time.time(), f"Last-Modified {header[:64]!r} is not a date; the file's time is the upload time"
    return stamp, None
