"""The HPSS backend: ids in HPSS's namespace, disk cache in front of tape.

A file is ``<prefix><id2filename(id)>`` in HPSS; under ``namespace = paths``,
``<prefix>/<path>``, below collections that are HPSS directories (see
``_levels`` for how symlinks in them are refused).  HEAD asks
FileGetXAttributes (never blocking, never staging) how many bytes each of the
five storage levels holds.  POST starts an asynchronous stage and returns at
once; GET of a file on tape only waits for the stage up to
``[hpss] stage_timeout`` seconds, then answers 503 with Retry-After.  PUT
writes a temporary name with hpss_Write, then stamps it, makes it read-only
and publishes it without ever replacing a file.  Before each request the core
server is pinged (at most every ``[hpss] ping_interval`` seconds per process):
down, or slower than ``accept_latency``, is 503.

Checksums are user-defined attributes of the file (see ``uda_checksums``),
set on the temporary file before it is published (UDAs belong to the file,
so they come along with the link that publishes it).

With pyai's emulator as the library, the HPSS namespace is the local
directory tree under the prefix (state in ``<prefix>/.hpss-emu``).
"""

import errno
import io
import logging
import os
import posixpath
import secrets
import stat
import time
from typing import Any, Iterator, Optional, Tuple

from pyai import serving
from pyai.archive.ids import id2filename, parse_integer, parse_path
from pyai.backends import moves, tree, uda_checksums
from pyai.backends.base import (
    COLLECTION_MODE,
    FILE_MODE,
    TEMP_PREFIX,
    Bytes,
    Checksums,
    CollectionStatus,
    FileStatus,
    Member,
    Probes,
    Reader,
    Writer,
    id_taken,
    no_collection,
    publishing,
)
from pyai.backends.jobs import KeyedPool
from pyai.config import Config
from pyai.errors import BackendUnavailable, ConfigError, Forbidden, describe
from pyai.ops import metrics

# What each storage level is, as the original reported it.
LEVEL_MEDIA = ("disk", "tape", "tape", "error", "error")
WRITE_BLOCK = 8 * 1024 * 1024
# A slow upload may take hours to gather WRITE_BLOCK bytes; the writer hands what
# it has to HPSS at least this often, so the temporary file's mtime (what the
# sweep goes by: HPSS has no lock a dead process drops) stays fresh.
REFRESH_EVERY = 30.0
# The sweep leaves temporary files younger than this alone whatever sweep_min_age says.
SWEEP_FLOOR = 120.0
READ_BLOCK = 1024 * 1024
log = logging.getLogger("pyai")


def media_of(size: int, per_level: Tuple[int, ...]) -> str:
    """The medium of the first level that holds the whole file ("error" when none does)."""
    for level, count in enumerate(per_level):
        if count == size:
            return LEVEL_MEDIA[level] if level < len(LEVEL_MEDIA) else "error"
    return "error"


def _load_binding() -> Any:  # the pyai.hpss_client module
    try:
        from pyai import hpss_client as hpss
    except ImportError as exc:
        raise ConfigError(
            f"the hpss backend needs the compiled binding pyai.hpss_client._hpss ({exc}); build it with `make compile`"
        ) from None
    return hpss


def etag_of(st: Any) -> str:  # st: an hpss_client.Stat
    """The ETag of a stored file, from its HPSS stat (HEAD's and GET's are one)."""
    return f'"{st.ino:x}-{st.size:x}-{int(st.mtime):x}"'


class HpssReader:
    """A stored file open for reading through hpss_Read (there is no local descriptor)."""

    def __init__(self, hpss: Any, fd: int, st: Any, path: str):  # st: an hpss_client.Stat
        self.hpss = hpss
        self.fd = fd
        self.path = path
        self.size = st.size
        self.mtime = st.mtime
        self.etag = etag_of(st)
        self.media: Optional[str] = "disk"  # "tape" when opening had to stage it
        self.stage_wait: Optional[float] = None
        self.offset = 0
        self.buffer: Any = None  # a cffi char[] once read

    def checksums(self) -> Checksums:
        """The stored ``{algorithm: digest}`` of this file (its user-defined attributes), {} when none."""
        return uda_checksums.read(self.hpss, self.path, self.size)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("an HPSS file has no local descriptor")

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.offset = self.hpss.seek(self.fd, offset, whence)
        return self.offset

    def tell(self) -> int:
        return self.offset

    def read(self, size: Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            size = max(self.size - self.offset, 0)
        size = min(size, READ_BLOCK)
        if size == 0:
            return b""
        if self.buffer is None:
            self.buffer = self.hpss.ffi.new("char[]", READ_BLOCK)
        serving.may_block()  # a read asks HPSS's movers: a GET's later steps too, not only its first
        count = self.hpss.read_into(self.fd, self.buffer, size)
        self.offset += count
        return self.hpss.ffi.buffer(self.buffer, count)[:]

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.hpss.close(fd)

    def __enter__(self) -> "HpssReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class HpssWriter(Writer):
    """A file being received into ``<dir>/.pyai-tmp-<random>`` in HPSS; see ``commit``."""

    def __init__(self, backend: "HpssBackend", path: str, replace: bool, parents: bool):
        self.backend = backend
        self.hpss = backend.hpss
        self.path = path
        self.replace = replace
        directory = posixpath.dirname(path)
        self.temp = posixpath.join(directory, TEMP_PREFIX + secrets.token_hex(8))  # "" once published or removed
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            self.fd: int = self.hpss.open(self.temp, flags, 0o600)
        except FileNotFoundError:
            if not parents:
                raise
            backend.make_dirs(directory)
            self.fd = self.hpss.open(self.temp, flags, 0o600)
        # HPSS moves data best in large transfers: small writes are gathered,
        # but never for longer than REFRESH_EVERY (see HpssBackend.sweep).
        self.pending = bytearray()
        self.refreshed = time.monotonic()
        self.size = 0  # bytes written so far (the checksum attributes record it)

    def fileno(self) -> None:
        return None  # the body comes through write()

    def write(self, data: Bytes) -> None:
        self.size += len(data)
        if not self.pending and len(data) >= WRITE_BLOCK:
            serving.may_block()  # a write asks HPSS's movers (an upload resumed after a wait too)
            self.hpss.write_all(self.fd, data)
            self.refreshed = time.monotonic()
            return
        self.pending += data
        if len(self.pending) >= WRITE_BLOCK or time.monotonic() - self.refreshed >= REFRESH_EVERY:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            serving.may_block()
            self.hpss.write_all(self.fd, self.pending)
            self.pending = bytearray()
        self.refreshed = time.monotonic()

    def commit(self, mtime: float, checksums: Optional[Checksums] = None) -> None:
        """Close, keep the checksums, stamp, make read-only, then publish under the id
        without replacing anything.

        The checksums are user-defined attributes of the temporary file, so the
        file is never visible under its id without them; HPSS refusing them
        (a system without UDAs) is logged and the file stored without."""
        with publishing(self):
            serving.may_block()  # close, attributes, rename: HPSS's servers answer each
            self._flush()
            fd, self.fd = self.fd, -1
            self.hpss.close(fd)
            if checksums:
                try:
                    uda_checksums.write(self.hpss, self.temp, self.size, checksums, time.time())
                except OSError as exc:
                    log.warning("could not keep the checksums of an upload in HPSS attributes: %s", describe(exc))
            self.hpss.utime(self.temp, mtime)
            self.hpss.chmod(self.temp, FILE_MODE)
            if self.replace:
                self.hpss.rename(self.temp, self.path)
            else:
                self.backend.publish(self.temp, self.path)
        self.temp = ""

    def abort(self) -> None:
        """Forget everything written (safe to call more than once)."""
        self.pending = bytearray()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                self.hpss.close(fd)
            except OSError:
                pass
        if self.temp:
            temp, self.temp = self.temp, ""
            try:
                self.hpss.unlink(temp)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("could not remove the temporary HPSS file %s of an upload: %s", temp, describe(exc))


class HpssBackend:
    """Files in HPSS under ``config.prefix``, by the id2filename layout (by path under ``namespace = paths``)."""

    name = "hpss"
    storage = "HPSS"
    waits_remotely = True  # every call asks HPSS's servers

    def __init__(self, config: Config):
        self.hpss = _load_binding()
        self.config = config
        self.retry_after: Optional[float] = config.hpss_retry_after
        self.prefix = config.prefix.rstrip("/")
        # namespace = paths: files named by paths below collections (see _levels)
        self.paths = config.namespace == "paths"
        self.root = self.prefix or "/"  # the root collection's path
        self.quota_cos = config.hpss_quota_cos  # 0: no space is reported
        # PATCH may take files from these trees only (all resolved at start-up)
        self.move_roots = (config.prefix,) + tuple(config.patch_roots)
        if self.hpss.EMULATOR:
            # The emulated namespace: the prefix (which also keeps the level
            # records) and the PATCH roots, where files come from.
            os.environ[self.hpss.EMULATOR_ROOT_ENV] = ":".join((config.prefix,) + tuple(config.patch_roots))
        self.session = self.hpss.Session(config.hpss_user, config.hpss_auth, config.hpss_sitename)
        try:
            self.session.ensure()
        except OSError as exc:
            raise ConfigError(
                f"HPSS login as {config.hpss_user!r} with the keytab {config.hpss_auth} failed: {exc.strerror}"
            ) from None
        self._checked: Tuple[float, Optional[str]] = (float("-inf"), None)  # (monotonic time, failure message)
        # stages from tape: config.stage_workers threads per process, one stage per path
        self._stages = KeyedPool(config.stage_workers, "hpss-stage")

    # -- liveness --------------------------------------------------------------

    def check(self) -> None:
        """503 when the core server is down or answers slower than accept_latency."""
        checked_at, failure = self._checked
        if time.monotonic() - checked_at >= self.config.hpss_ping_interval:
            failure = self._ping()
            self._checked = (time.monotonic(), failure)
        if failure:
            raise BackendUnavailable(failure, retry_after=self.config.hpss_retry_after, detail="HPSS unavailable")

    def _ping(self) -> Optional[str]:
        return self._probe_core()[0]

    def _probe_core(self) -> Tuple[Optional[str], Optional[float]]:
        """(failure or None, the ping's latency in seconds when it answered)."""
        try:
            latency = self.session.ping()
        except OSError as exc:
            return f"HPSS is unavailable: the core server does not answer ({exc.strerror})", None
        if latency > self.config.hpss_accept_latency:
            return (
                f"HPSS is too slow: the core server answered in {latency:.2f} s "
                f"(accept_latency is {self.config.hpss_accept_latency:g} s)"
            ), latency
        return None, latency

    def probe(self) -> Probes:
        return {"hpss": self._probe_core()}

    # -- reading ---------------------------------------------------------------

    def path_for(self, ident: str) -> str:
        if self.paths:
            return self.prefix + "/" + parse_path(ident)
        return self.prefix + id2filename(parse_integer(ident))

    def _levels(self, path: str, *, writing: bool) -> None:
        """Under paths, lstat each collection between the prefix and ``path``: a symlink is
        Forbidden for a write and FileNotFoundError for a read, a file NotADirectoryError, a
        missing level FileNotFoundError.  Nothing under ids.

        HPSS resolves a path on its servers, and its client API has no call that
        refuses a symlink on the way (no O_NOFOLLOW, no openat), so this checks,
        then the caller uses the path: a link swapped in between would be
        followed.  On HPSS that window is closed by who can write: only this
        service's HPSS account writes in its namespace (clients reach it only
        through the service, which never makes a link), so no one swaps a level
        between the two calls; what the check stops is a link planted before,
        by an administrator or another tool, leading out of the tree.
        """
        if not self.paths:
            return
        level = self.prefix
        for name in path[len(self.prefix) + 1 :].split("/")[:-1]:
            level += "/" + name
            st = self.hpss.lstat(level)
            if stat.S_ISLNK(st.mode):
                if writing:
                    raise Forbidden(
                        "a collection in the path is a symlink, which the archive never follows",
                        detail="a collection in the path is a symlink",
                    )
                raise FileNotFoundError(errno.ENOENT, "a collection in the path is a symlink", level)
            if not stat.S_ISDIR(st.mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a collection", level)

    def _regular(self, path: str, *, writing: bool = False) -> Any:  # an hpss_client.Stat
        """The stat of the stored file ``path``; FileNotFoundError for anything else: a symlink at
        ``path`` is no stored file (as on posix).  Under paths the levels above it are checked too
        (``_levels``)."""
        self._levels(path, writing=writing)
        st = self.hpss.lstat(path)
        if not stat.S_ISREG(st.mode):
            raise FileNotFoundError(errno.ENOENT, "not a regular file")
        return st

    def _file_status(self, path: str, st: Any) -> FileStatus:  # st: an hpss_client.Stat
        size, per_level = self.hpss.levels(path)
        return FileStatus(path, st.size, st.mtime, st.ctime, per_level, media_of(size, per_level), etag_of(st))

    def status(self, path: str) -> Optional[FileStatus]:
        try:
            return self._file_status(path, self._regular(path))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, path: str) -> bool:
        try:
            self._regular(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def _on_disk(self, path: str) -> bool:
        size, per_level = self.hpss.levels(path)
        return size == 0 or per_level[0] == size

    def open_read(self, path: str) -> HpssReader:
        st = self._regular(path)
        waited = None if self._on_disk(path) else self._wait_for_disk(path)
        fd = self.hpss.open(path, os.O_RDONLY)
        reader = HpssReader(self.hpss, fd, st, path)
        if waited is not None:
            reader.media, reader.stage_wait = "tape", waited
        return reader

    def _wait_for_disk(self, path: str) -> float:
        """Stage and wait up to stage_timeout, returning the seconds waited; past it, 503 with
        Retry-After (the stage goes on)."""
        started = time.monotonic()
        deadline = started + self.config.hpss_stage_timeout
        if self.stage(path):
            return time.monotonic() - started
        pause = 0.05
        while time.monotonic() < deadline:
            time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            if self._on_disk(path):
                return time.monotonic() - started
            pause = min(pause * 2, 1.0)
        exc = BackendUnavailable(
            "the file is on tape and is being staged to disk; ask again later",
            retry_after=self.config.hpss_retry_after,
            detail="file is on tape, staging",
        )
        exc.stage_wait = time.monotonic() - started
        raise exc

    def stage(self, path: str) -> bool:
        """True when the file is on disk; else queue one stage (per path and process) and return False."""
        st = self._regular(path)
        if self._on_disk(path):
            return True
        self._stages.start(path, lambda: self._stage_from_tape(path, st.size))
        return False

    def _stage_from_tape(self, path: str, size: int) -> None:
        """On a pool thread: start the stage and wait for it (closing the descriptor waits)."""
        try:
            # O_NONBLOCK: a descriptor for the stage call only, opening must not stage.
            fd = self.hpss.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                self.hpss.stage(fd, size, asynchronous=True)
            finally:
                self.hpss.close(fd)
        except OSError as exc:
            log.warning("a stage from tape of %s failed: %s", path, describe(exc))
        else:
            metrics.stage_reached_disk(path)

    def release(self, path: str) -> None:
        """Purge the disk copy, only when a tape level holds the whole file (never the only copy)."""
        if self.paths:
            self._regular(path)  # no purge through a symlink
        size, per_level = self.hpss.levels(path)
        if size == 0 or not any(count == size for count in per_level[1:]) or per_level[0] == 0:
            return
        fd = self.hpss.open(path, os.O_RDWR | os.O_NONBLOCK)  # O_NONBLOCK: opening must not stage
        try:
            self.hpss.purge(fd)
        finally:
            self.hpss.close(fd)

    # -- writing ---------------------------------------------------------------

    def create(
        self, path: str, *, size_hint: Optional[int] = None, replace: bool = False, parents: bool = True
    ) -> HpssWriter:
        """A writer of ``path``.  Under ids its directory is made when missing (the id2filename
        levels); under paths never, whatever ``parents`` says: a missing one is FileNotFoundError,
        a file in its place NotADirectoryError (the client MKCOLs first), a symlink Forbidden."""
        self._levels(path, writing=True)
        return HpssWriter(self, path, replace, parents=not self.paths)

    def publish(self, source: str, path: str) -> None:
        """Give ``source`` the name ``path`` unless that exists (HPSS's rename would replace it).

        A hard link fails atomically when the name is taken, so two racing
        uploads give exactly one winner; the old name is removed after.
        """
        try:
            self.hpss.link(source, path)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS):
                raise
            if self.exists(path):  # links not allowed here: check, then rename
                raise FileExistsError(errno.EEXIST, "exists") from None
            self.hpss.rename(source, path)
            return
        self.hpss.unlink(source)

    def make_dirs(self, directory: str) -> None:
        """mkdir -p in HPSS (its Mkdir makes one level; HPSS makes a closed directory durable itself)."""
        tree.make_dirs(directory, self.hpss.mkdir)

    def move(self, source: str, path: str) -> None:
        """PATCH: rename a file already in HPSS under the prefix (or a patch root) to the id."""
        # HPSS resolves the path itself: ".." is taken lexically here, and what
        # is checked is the path that is renamed
        source = posixpath.normpath(source)
        moves.allowed_source(source, self.move_roots)
        # lstat: a link would move as a link, pointing who knows where
        st = self.hpss.lstat(source)
        moves.check_source(st.mode)  # HPSS tells no link count
        if self.paths:
            try:  # under paths only MKCOL makes collections: 409, as a PUT's
                self._levels(path, writing=True)
            except (FileNotFoundError, NotADirectoryError):
                raise no_collection() from None
        else:
            self.make_dirs(posixpath.dirname(path))
        # its bytes were never hashed here: whatever pyai keys it carries are not believed
        uda_checksums.forget(self.hpss, source, st.size)
        try:
            self.publish(source, path)
        except FileExistsError:
            raise id_taken("move") from None
        self.hpss.chmod(path, FILE_MODE)

    # -- collections (namespace = paths) -----------------------------------------

    def collection(self, path: str) -> Optional[CollectionStatus]:
        try:
            if path == self.root:
                st = self.hpss.stat(self.root)  # the prefix is configured, trusted as posix's is
            else:
                self._levels(path, writing=False)
                st = self.hpss.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return CollectionStatus(path, st.mtime, st.ctime) if stat.S_ISDIR(st.mode) else None

    def make_collection(self, path: str) -> None:
        """One hpss_Mkdir (never recursive); HPSS makes the new entry durable itself."""
        self._levels(path, writing=True)
        self.hpss.mkdir(path, COLLECTION_MODE)

    def remove_collection(self, path: str) -> None:
        self._levels(path, writing=True)
        if not stat.S_ISDIR(self.hpss.lstat(path).mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a collection", path)
        self.hpss.rmdir(path)  # ENOTEMPTY: an archive is never removed recursively

    def members(self, path: str, limit: int) -> Iterator[Member]:
        """Readdir, then an lstat per name (HPSS tells no file types) and the levels of each file.

        The names are read whole and the directory closed at once, so no HPSS
        directory stays open while a listing streams to a slow client."""
        if path != self.root:
            self._levels(path, writing=False)
            if not stat.S_ISDIR(self.hpss.lstat(path).mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a collection", path)
        serving.may_block()  # also when a streamed listing resumes: each name asks HPSS
        names = self.hpss.listdir(path)
        # dot names are temporary files and anything else not stored
        candidates = (self._member(posixpath.join(path, name), name) for name in names if not name.startswith("."))
        yield from tree.first_members(candidates, limit)

    def _member(self, path: str, name: str) -> Optional[Member]:
        """The Member at ``path``; None for anything but a file or a directory (a symlink), or gone."""
        try:
            st = self.hpss.lstat(path)
            if stat.S_ISDIR(st.mode):
                return Member(name, None, CollectionStatus(path, st.mtime, st.ctime))
            if not stat.S_ISREG(st.mode):
                return None
            return Member(name, self._file_status(path, st), None)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def rename(self, source: str, path: str, *, replace: bool) -> None:
        """Give the stored file ``source`` the name ``path``: without ``replace`` by link and unlink
        (``publish``: never replacing), else hpss_Rename.  The checksums are attributes of the
        file, so they come along; HPSS makes the names durable itself."""
        self._levels(source, writing=True)
        self._levels(path, writing=True)
        if not stat.S_ISREG(self.hpss.lstat(source).mode):
            raise FileNotFoundError(errno.ENOENT, "no stored file", source)
        if replace:
            self.hpss.rename(source, path)
        else:
            self.publish(source, path)

    def space(self) -> Optional[Tuple[int, int]]:
        """(bytes used, bytes available) of ``[hpss] quota_cos`` (hpss_Statfs); None without one."""
        if not self.quota_cos:
            return None
        fs = self.hpss.statfs(self.quota_cos)
        # nfs-ganesha's HPSS FSAL saw f_bfree above f_blocks: never a negative use
        return max(fs.blocks - fs.bfree, 0) * fs.bsize, fs.bavail * fs.bsize

    def stored_size(self, path: str) -> Optional[int]:
        try:
            return self._regular(path).size
        except OSError:
            return None

    def confirm_durable(self, path: str) -> None:
        """HPSS makes a closed file durable itself."""

    def checksums(self, path: str) -> Checksums:
        """The stored ``{algorithm: digest}`` of the file at ``path`` (user-defined attributes), {} when none."""
        try:
            size = self._regular(path).size
        except (FileNotFoundError, NotADirectoryError):
            return {}
        return uda_checksums.read(self.hpss, path, size)

    def add_checksums(self, path: str, reader: Reader, computed: Checksums) -> Checksums:
        """Keep ``computed`` (digests of the stored bytes) with the stored ones, in one
        UserAttrSetAttrs; the whole set after."""
        return uda_checksums.add(self.hpss, path, reader.size, computed, time.time())

    def _list_dir(self, directory: str) -> Iterator[tree.Entry]:
        """The tree.Lister of HPSS: its readdir, then an lstat per name (HPSS tells no file types)."""
        for name in self.hpss.listdir(directory):
            path = posixpath.join(directory, name)
            try:
                st = self.hpss.lstat(path)
            except OSError:  # gone meanwhile
                continue
            yield tree.Entry(path, name, stat.S_ISDIR(st.mode), stat.S_ISREG(st.mode), st.mtime)

    def stored_paths(self) -> Iterator[str]:
        """Every stored file under the prefix (never temporary files or other dot names)."""
        return tree.stored_files(self.prefix or "/", self._list_dir)

    def delete(self, path: str) -> None:
        self._regular(path, writing=True)
        self.hpss.chmod(path, 0o644)  # as the original: never unlink a read-only file
        self.hpss.unlink(path)

    def sweep(self) -> int:
        """Remove temporary files of uploads that stopped long ago; return how many.

        HPSS has no lock a dead process drops, so age tells.  A live upload
        writes to its temporary file at least every REFRESH_EVERY seconds plus
        the time the client may pause (receive_timeout, 60 s when 0 = no limit),
        so twice that, at least SWEEP_FLOOR and at least sweep_min_age, is dead.
        """
        gap = REFRESH_EVERY + (self.config.receive_timeout or 60)
        horizon = time.time() - max(2 * gap, SWEEP_FLOOR, self.config.sweep_min_age)
        removed = 0
        for entry in tree.temp_files(self.prefix or "/", self._list_dir):
            if entry.mtime is not None and entry.mtime < horizon:
                try:
                    self.hpss.unlink(entry.path)
                    removed += 1
                except OSError:
                    pass
        return removed
