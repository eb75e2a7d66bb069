"""The Tape API's operations, as the HTTP layer calls them: stage, poll, cancel, delete, release, archiveinfo.

Owners: a request is visible to, and may be changed by, the owner that made
it (the token it came with; everyone is one owner with authentication off).
Another owner's request is answered as if it did not exist (404).

Bounds: a stage decides at once what it can (a path naming no stored file is
FAILED, an empty one too, one on disk COMPLETED), so only files that need the
tape reach the executor; an owner keeps at most ``max_kept_files`` file rows
(finished requests count until they expire after ``request_expiry``), so no
client's traffic grows the store without bound.
"""

import errno
import hashlib
import logging
import time
import uuid
from typing import Iterable, List, Optional, Sequence, Set, Tuple, TypedDict, Union

from pyai.backends.base import Backend, FileStatus
from pyai.config import Config
from pyai.errors import ArchiveError, BackendUnavailable, BadRequest, NotFound
from pyai.ops import metrics
from pyai.tape import bodies
from pyai.tape.executor import Executor
from pyai.tape.models import COMPLETED, FAILED, RUNNING, SUBMITTED, StageFile, StageRequest
from pyai.tape.store import FileRow, Store, check_config, describe_store, target_key

log = logging.getLogger("pyai")
ANONYMOUS = "anyone"
OPEN_REQUESTS_RETRY_AFTER = 60  # seconds: how soon an owner at its limit may find a request finished


class _FileEntryKeys(TypedDict):
    path: str
    state: str


class FileEntry(_FileEntryKeys, total=False):
    """A file of ``GET /stage/<id>``: its times and error only when it has them."""

    startedAt: int
    finishedAt: int
    error: str


class _StageDocumentKeys(TypedDict):
    id: str
    createdAt: int
    startedAt: int


class StageDocument(_StageDocumentKeys, total=False):
    """The document of ``GET /stage/<id>``."""

    completedAt: int  # once every file finished
    files: List[FileEntry]  # always there: set last, after completedAt (the order of the keys answered)


class Locality(TypedDict):
    """An archiveinfo entry of a stored file: ``locality()``, or UNAVAILABLE when the storage cannot say now."""

    path: str
    locality: str


class LocalityError(TypedDict):
    """An archiveinfo entry of a path naming no id, or no stored file."""

    path: str
    error: str


class TooManyRequests(ArchiveError):
    status = 429

    def __init__(self, message: str, *, retry_after: int, detail: Optional[str] = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


def owner_of(token: Optional[str]) -> str:
    """The owner a bearer token stands for: a digest of it, never the token itself."""
    if token is None:
        return ANONYMOUS
    return "token-" + hashlib.sha256(token.encode("latin-1")).hexdigest()[:40]


class TapeService:
    def __init__(self, config: Config, backend: Backend) -> None:
        self.config = config
        self.nested = config.namespace == "paths"  # a path names a file at that path, not only /<id>
        self.backend = backend
        check_config(config)  # a bad [tape] store stops the worker's boot with one line
        self.store = Store(config)
        self.executor = Executor(self.store, backend, config)
        # on hpss the default SQLite store is on this host, not in HPSS: say where (gunicorn's
        # error log when pyai's logger has no handler, as pyai.backends.flusher announces)
        target = log if log.hasHandlers() else logging.getLogger("gunicorn.error")
        target.info("the Tape API's stage requests are kept in %s", describe_store(config))

    # -- stage -------------------------------------------------------------------

    def stage(self, owner: str, files: Sequence[Tuple[str, Optional[float]]]) -> str:
        """Store a stage request for ``files`` ([(path, lifetime)]); its id."""
        if len(files) > self.config.tape_max_files:
            raise BadRequest(
                f"too many files: a stage request may name at most {self.config.tape_max_files}",
                detail="too many files",
            )
        if self.store.open_requests(owner) >= self.config.tape_max_open_requests:
            metrics.count_refusal(metrics.TAPE_OPEN_REQUESTS)
            raise TooManyRequests(
                f"{self.config.tape_max_open_requests} stage requests of this client are unfinished; "
                "wait for some to finish (or cancel them)",
                retry_after=OPEN_REQUESTS_RETRY_AFTER,
                detail="too many open requests",
            )
        now = int(time.time())
        paths = list(dict.fromkeys(path for path, _ in files))  # each path once in a request
        self._check_kept(owner, len(paths), now)
        request_id = str(uuid.uuid4())
        lifetimes = dict(reversed(files))  # the first entry of a path names its lifetime
        rows = [self._file_row(request_id, position, path, lifetimes[path], now) for position, path in enumerate(paths)]
        self.store.add_request(request_id, owner, now, rows)
        for row in rows:
            if row["state"] != SUBMITTED:
                metrics.count_stage(metrics.TAPE, row["state"].lower())
        if any(row["state"] == SUBMITTED for row in rows):
            self.executor.ensure_running()
            self.executor.wake()
        return request_id

    def _check_kept(self, owner: str, adding: int, now: int) -> None:
        """429 when ``owner``'s requests would hold more than ``max_kept_files`` file rows."""
        limit = self.config.tape_max_kept_files
        kept = self.store.kept_files(owner)
        if kept + adding > limit and self.store.expire(now - self.config.tape_request_expiry, now, owner=owner):
            kept = self.store.kept_files(owner)  # some were due to expire: the executor's sweep had not come
        if kept + adding > limit:
            metrics.count_refusal(metrics.TAPE_KEPT_FILES)
            raise TooManyRequests(
                f"too many files kept: this client's requests hold {kept} files and {limit} may be kept; "
                "finished requests are forgotten after [tape] request_expiry (or DELETE them)",
                retry_after=OPEN_REQUESTS_RETRY_AFTER,
                detail="too many files kept",
            )

    def _file_row(self, request_id: str, position: int, path: str, lifetime: Optional[float], now: int) -> FileRow:
        seconds = self.config.tape_default_lifetime if lifetime is None else lifetime
        row: FileRow = {
            "request_id": request_id,
            "position": position,
            "path": path,
            "state": SUBMITTED,
            "pinned_until": now + int(min(seconds, self.config.tape_max_lifetime)),
            "target": None,
            "target_key": None,
            "error": None,
            "started_at": None,
            "finished_at": None,
        }
        try:
            target = bodies.target_of(self.backend, path, self.nested)
        except ValueError as exc:  # no id: FAILED at once, reported when polled
            row.update({"state": FAILED, "error": str(exc), "started_at": now, "finished_at": now})
            return row
        row.update({"target": target, "target_key": target_key(target)})
        decided = self._decided(target)
        if decided is not None:
            state, error = decided
            row.update({"state": state, "error": error, "started_at": now, "finished_at": now})
        return row

    def _decided(self, target: str) -> Optional[Tuple[str, Optional[str]]]:
        """(state, error) of a file whose stage needs no tape: missing, empty or on disk; else None.

        One status per file (at most max_files per request), as archiveinfo asks; a backend
        that cannot answer now leaves the file to the executor, which asks again.
        """
        try:
            status = self.backend.status(target)
        except BackendUnavailable:
            return None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return FAILED, "no file is stored under this id"
            return None
        if status is None:
            return FAILED, "no file is stored under this id"
        if status.size == 0:
            return FAILED, "the file is empty: there is nothing on tape to stage"
        if status.media == "disk":
            return COMPLETED, None
        return None

    def poll(self, owner: str, request_id: str) -> StageDocument:
        """The document of ``GET /stage/<id>``."""
        self.executor.ensure_running()
        request, files = self._request(owner, request_id)
        document: StageDocument = {"id": request.id, "createdAt": request.created_at, "startedAt": request.created_at}
        entries: List[FileEntry] = []
        finished: List[int] = []
        for row in files:
            entry: FileEntry = {"path": row.path, "state": row.state}
            if row.started_at is not None:
                entry["startedAt"] = row.started_at
            if row.finished_at is not None:
                entry["finishedAt"] = row.finished_at
                finished.append(row.finished_at)
            if row.error:
                entry["error"] = row.error
            entries.append(entry)
        if len(finished) == len(files):
            document["completedAt"] = max(finished, default=request.created_at)
        document["files"] = entries
        return document

    def _request(self, owner: str, request_id: str) -> Tuple[StageRequest, List[StageFile]]:
        found = self.store.request(request_id[:64], owner)
        if found is None:
            raise NotFound("no stage request has this id", detail="unknown request")
        return found

    def cancel(self, owner: str, request_id: str, paths: Sequence[str]) -> None:
        _, files = self._request(owner, request_id)
        known = {row.path for row in files}
        missing = [path for path in paths if path not in known]
        if missing:
            raise BadRequest(f"File missing from stage request: {missing[0][:200]}", detail="path not in request")
        self.store.cancel(request_id, paths, int(time.time()))

    def delete(self, owner: str, request_id: str) -> None:
        self._request(owner, request_id)
        self.store.delete(request_id, int(time.time()))

    def release(self, owner: str, request_id: str, paths: Iterable[str]) -> None:
        """Drop pins on ``paths`` and evict what no pin holds any more.

        With the id of one of the owner's requests, that request's pins on
        them go (paths outside it are ignored).  An id that names none -- gfal2
        releases under a placeholder id when it has none, and CTA ignores the
        id -- releases the owner's pins on those paths in every request, and
        a file no request pins at all may be evicted too.
        """
        now = int(time.time())
        named: Set[str] = set()
        for path in paths:  # at most max_files (bodies.paths_of)
            try:
                named.add(bodies.target_of(self.backend, path, self.nested))
            except ValueError:
                continue  # names no id: no request pins it, nothing to release
        if self.store.request(request_id[:64], owner) is not None:
            free = self.store.release(named, now, request_id=request_id)
        else:
            free = self.store.release(named, now, owner=owner)
            free = self.store.unpinned(set(free) | named, now)
        for target in free:
            try:
                self.backend.release(target)
            except OSError as exc:  # the file stays on disk: release is advice, not a promise
                log.warning("releasing a file from disk failed: %s", exc.strerror or exc)

    # -- archiveinfo -------------------------------------------------------------------

    def archiveinfo(self, paths: Sequence[str]) -> List[Union[Locality, LocalityError]]:
        """``[{"path", "locality"} | {"path", "error"}]`` for the first ``max_archiveinfo`` paths."""
        return [self._locality(path) for path in paths[: self.config.tape_max_archiveinfo]]

    def _locality(self, path: str) -> Union[Locality, LocalityError]:
        try:
            target = bodies.target_of(self.backend, path, self.nested)
        except ValueError as exc:
            return {"path": path, "error": str(exc)}
        try:
            status = self.backend.status(target)
        except (BackendUnavailable, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return {"path": path, "error": "no file is stored under this id"}
            return {"path": path, "locality": "UNAVAILABLE"}
        if status is None:
            return {"path": path, "error": "no file is stored under this id"}
        return {"path": path, "locality": locality(status)}


def locality(status: FileStatus) -> str:
    """DISK, TAPE, DISK_AND_TAPE, NONE (empty) or LOST, from a FileStatus's levels."""
    if status.size == 0:
        return "NONE"
    levels = tuple(status.bytes_per_level)
    on_disk = bool(levels) and levels[0] >= status.size
    on_tape = any(count >= status.size for count in levels[1:])
    if on_disk and on_tape:
        return "DISK_AND_TAPE"
    if on_disk:
        return "DISK"
    if on_tape:
        return "TAPE"
    return "LOST"


__all__ = ["TapeService", "TooManyRequests", "owner_of", "RUNNING"]
