"""The posix backend: one regular file per id under a prefix directory.

Writes go to a temporary file in the target directory (a name no id can
address, locked from before it has that name until it is published; see
``tempfiles``), are stamped, made read-only and durable, then published with a
rename that refuses to replace, itself made durable before the client hears
201: how, with which flushes shared among concurrent uploads, is the method
``flusher`` chose for the prefix's file system.  Reads hand gunicorn a real descriptor so the
kernel sends the bytes (sendfile); a symlink under an id is no stored file.

PATCH works on descriptors, never on a path checked and then used again: the
source is opened below a held descriptor of its root without following any
symlink (see ``beneath``), must be a regular file with one link, is renamed to
a temporary name beside the id, checked to be the inode that was opened, made
the service's (owner, mode 0444, fsync) and published like a PUT.  Where a
rename cannot do that (another file system, or a non-root service and a file
it does not own) the bytes are copied, with their checksum, instead.
"""

import contextlib
import errno
import fcntl
import logging
import os
import stat
from typing import Callable, Iterator, List, NamedTuple, Optional, Tuple

from pyai import native as fileio
from pyai import serving
from pyai.archive import checksums as digests
from pyai.archive.ids import id2filename, parse_integer, parse_path, parse_safe_name
from pyai.backends import beneath, checksum_store, moves, tempfiles, tree
from pyai.backends.base import (
    COLLECTION_MODE,
    FILE_MODE,
    Bytes,
    Checksums,
    CollectionStatus,
    FileStatus,
    Member,
    Probes,
    Reader,
    Writer,
    id_taken,
    is_temp_name,
    no_collection,
    publishing,
)
from pyai.backends.dirsync import DirectorySyncer
from pyai.backends.flusher import Flusher
from pyai.config import Config
from pyai.errors import BackendUnavailable, Forbidden, StoredNotDurable, describe

# Hints to the page cache only pay off for files that take more than a few reads.
ADVISE_FROM = 1 << 20
# A directory fsync that fails after the rename is tried this often before the
# client hears that its file is stored but not known to be durable.
DIR_SYNC_ATTEMPTS = 3
# PATCH copies across file systems in blocks of this size, hashing as it goes.
COPY_BLOCK = 1 << 20
# Stored files are opened without following a symlink (a link under an id is no
# stored file) and without blocking in open() on a FIFO planted there.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
log = logging.getLogger("pyai")


class PosixReader:
    """A stored file open for reading: its descriptor, with the facts GET needs from one fstat.

    Not an ``io.FileIO``, which would fstat the descriptor again.  A reader dropped
    without ``close`` still closes its descriptor (as a file object does)."""

    media: Optional[str] = "disk"  # a posix file system has only the disk
    stage_wait: Optional[float] = None

    def __init__(self, path: str, opened: Optional[Tuple[int, os.stat_result]] = None):
        self.fd = -1  # for __del__ when opening fails
        self.fd, st = opened or open_stored(path)
        self.blocking = False  # opened O_NONBLOCK (never to wait on a FIFO); see fileno
        self.size = st.st_size
        self.mtime = st.st_mtime
        self.etag = etag_of(st)
        self.path = path

    def fileno(self) -> int:
        """The descriptor, its reads blocking again: an HSM's file system may answer a
        non-blocking read of a file on tape with EAGAIN instead of recalling it."""
        fd = self._descriptor()
        if not self.blocking:
            os.set_blocking(fd, True)
            self.blocking = True
        return fd

    def _descriptor(self) -> int:
        if self.fd < 0:
            raise ValueError("I/O operation on closed file")
        return self.fd

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes in one read (the rest of the file when ``size`` < 0)."""
        if size is None or size < 0:
            return b"".join(iter(lambda: os.read(self.fileno(), COPY_BLOCK), b""))
        if not self.blocking:
            try:  # a small GET's one read, as opened: a local file system ignores O_NONBLOCK
                return os.read(self._descriptor(), size)
            except BlockingIOError:
                pass  # an HSM's file on tape: read again, blocking, while it is recalled
        return os.read(self.fileno(), size)

    def readinto(self, buffer: bytearray) -> int:
        return os.readv(self.fileno(), [buffer])

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self.fileno(), offset, whence)

    def tell(self) -> int:
        return os.lseek(self.fileno(), 0, os.SEEK_CUR)

    def checksums(self) -> Checksums:
        """The stored ``{algorithm: digest}`` of this file, {} when none."""
        return checksum_store.read(self.path, self._descriptor())

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> "PosixReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def etag_of(st: os.stat_result) -> str:
    """The ETag of a stored file, from its stat (HEAD's and GET's are one)."""
    # Files are write-once, so inode, size and mtime identify the bytes.
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def open_stored(path: str, opener: Callable[[str, int], int] = os.open) -> Tuple[int, os.stat_result]:
    """``(fd, stat)`` of the regular file at ``path``, still O_NONBLOCK; FileNotFoundError for a
    symlink or anything else.  ``opener``: os.open, or a backend's that follows no symlink on the way."""
    try:
        fd = opener(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink, a socket
            raise FileNotFoundError(errno.ENOENT, "not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(errno.ENOENT, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


class PosixWriter(Writer):
    """A file being received into ``<dir>/.pyai-tmp-<token>`` (locked from the start); see ``commit``.

    With ``dir_fd`` (``namespace = paths``: the file's directory, opened below the
    prefix without following a symlink) the temporary file is made, published and
    removed by name in that held directory, never by a path that could be redirected.
    """

    def __init__(
        self,
        path: str,
        size_hint: Optional[int],
        replace: bool,
        syncer: DirectorySyncer,
        root: str,
        flusher: Flusher,
        dir_fd: Optional[int] = None,
    ):
        # size_hint: accepted for the protocol; space is reserved as the bytes arrive (pyai.web.receive)
        self.path = path
        self.syncer = syncer
        self.flusher = flusher
        self.directory = os.path.dirname(path)
        self.replace = replace
        self.dir_fd = dir_fd  # owned: closed when the writer is done
        self.fd = -1
        try:
            if dir_fd is None:
                self.fd, self.temp = _open_temp(self.directory, root, syncer)  # temp: "" once published or removed
            else:
                self.fd, self.temp = tempfiles.create_locked(self.directory, dir_fd=dir_fd)
        except BaseException:
            self._close_dir()
            raise

    def fileno(self) -> int:
        return self.fd

    def write(self, data: Bytes) -> None:
        fileio.write_all(self.fd, data)

    def commit(self, mtime: float, checksums: Optional[Checksums] = None) -> None:
        """Make the bytes durable and read-only, then publish them under the id,
        with their ``{algorithm: digest}`` when given (see checksum_store).

        StoredNotDurable when the file is stored but its directory entry could
        not be made durable (a retry of the same bytes is then answered 201)."""
        with publishing(self):
            dev = os.fstat(self.fd).st_dev
            steps = self.flusher.for_dev(dev)
            if self.flusher.flush_waits(dev):
                serving.may_block()  # the flushes wait for the device: other clients need not
            steps.written(self.fd)
            # before fchmod: user xattrs need a writable file
            in_xattr = not checksums or checksum_store.set_on_temp(self.fd, checksums)
            os.utime(self.fd, (mtime, mtime))
            os.fchmod(self.fd, FILE_MODE)
            steps.before_publish(self.fd)
            # Published while still open and locked, so a sweep sees it alive to the end.
            self._publish()
        self.temp = ""
        try:
            # only once the file is the id's: a 409 must not touch the old sidecar
            # (by path: a sidecar is bound to its file's inode and times, see checksum_store)
            if checksums and not in_xattr:
                checksum_store.write_sidecar(self.path, self.fd, checksums)
        except OSError as exc:  # the file is stored: its checksum is unknown, not wrong
            log.warning("could not write the checksum sidecar of a stored file: %s", describe(exc))
        finally:
            os.close(self.fd)
            self.fd = -1
        try:
            if self.dir_fd is None:
                sync_published(steps.after_publish, self.directory)
            else:
                held = self.dir_fd
                sync_published(lambda _: fileio.fsync(held), self.directory)
        finally:
            self._close_dir()

    def _publish(self) -> None:
        if self.dir_fd is None:
            if self.replace:
                os.replace(self.temp, self.path)
            else:
                fileio.rename_noreplace(self.temp, self.path)
            return
        name = os.path.basename(self.path)
        if self.replace:
            os.replace(self.temp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        else:
            fileio.rename_noreplace(self.temp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    def abort(self) -> None:
        """Forget everything written (safe to call more than once)."""
        if self.temp:
            # removed while still locked: no sweep ever sees it unlocked
            try:
                os.unlink(self.temp, dir_fd=self.dir_fd)
            except FileNotFoundError:
                pass
            self.temp = ""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._close_dir()

    def _close_dir(self) -> None:
        if self.dir_fd is not None:
            fd, self.dir_fd = self.dir_fd, None
            os.close(fd)


def sync_published(sync: Callable[[str], None], directory: str) -> None:
    """Make the rename into ``directory`` durable with ``sync`` (the method's directory fsync or
    syncfs), a few times; StoredNotDurable when it keeps failing.

    Retrying helps against transient failures; a file system that lost the
    entry (ext4 aborting its journal) fails every later fsync too, so a retry
    that succeeds is not a lie about an earlier loss.
    """
    reason = "error"
    for attempt in range(1, DIR_SYNC_ATTEMPTS + 1):
        try:
            sync(directory)
            return
        except OSError as exc:
            reason = exc.strerror or "error"
            log.warning(
                "making a directory entry durable after publishing failed (attempt %d of %d): %s",
                attempt,
                DIR_SYNC_ATTEMPTS,
                describe(exc),
            )
    raise StoredNotDurable(
        "the file is stored under the id, but the storage could not confirm that it is durable "
        f"(directory fsync failed: {reason}); a retry with the same bytes is answered 201 once it can",
        detail=f"publish: stored, directory fsync failed: {reason}",
    ) from None


def _open_temp(directory: str, root: str, syncer: DirectorySyncer) -> Tuple[int, str]:
    """``(fd, path)`` of a new locked temporary file in ``directory`` (made, with its parents, if missing)."""
    try:
        return tempfiles.create_locked(directory)
    except FileNotFoundError:
        # racing threads making the same levels share one fsync of each parent
        make_dirs(directory, root, syncer.synced)
        return tempfiles.create_locked(directory)


def make_dirs(directory: str, root: str, sync_dir: Optional[Callable[[str], None]] = None) -> None:
    """mkdir -p below ``root`` (never making it); returns once every level's entry is durable
    in its parent, synced with ``sync_dir`` (default fileio.fsync_dir).  See tree.make_dirs."""
    tree.make_dirs(directory, os.mkdir, root=root, root_exists=os.path.isdir, sync_dir=sync_dir or fileio.fsync_dir)


def prefix_problem(prefix: str) -> Optional[str]:
    """Why files cannot be stored under ``prefix`` now, or None.  As root, access() says yes to
    anything: a read-only mount is asked of the file system itself."""
    try:
        st = os.statvfs(prefix)
    except OSError as exc:
        return f"the archive directory is unavailable ({exc.strerror})"
    if st.f_flag & os.ST_RDONLY:
        return "the archive directory is on a read-only file system"
    if not os.path.isdir(prefix):
        return "the archive directory is not a directory"
    if not os.access(prefix, os.W_OK | os.X_OK):
        return "the archive directory is not writable by this user"
    return None


class PosixBackend:
    """Files under ``config.prefix``, by safe name or by the id2filename layout."""

    name = "posix"
    storage = "the file system"  # what a 503 calls it
    waits_remotely = False  # its calls wait on no server (see base.Backend)
    retry_after: Optional[float] = None  # seconds a 503 tells the client to wait, when known

    def __init__(self, config: Config):
        self.prefix = config.prefix
        self.root = config.prefix  # the root collection's path (namespace = paths)
        self.use_id2filename = config.use_id2filename
        # namespace = paths: every name is resolved below a held descriptor of the
        # prefix with no symlink followed (see beneath), never by a path again
        self.paths = config.namespace == "paths"
        # PATCH may take files from these trees only (all resolved at start-up).
        self.move_roots = (config.prefix,) + tuple(config.patch_roots)
        # what PATCH stores with a file it copies (a renamed file keeps no checksum)
        self.checksum_algorithms = config.checksums
        self.syncer = DirectorySyncer()
        self.flusher = Flusher(config.prefix, config.durability, self.syncer)  # logs its choice
        self.sweep_min_age = config.sweep_min_age

    def check(self) -> None:
        """A local file system has no server to be down; failures surface per operation."""

    def probe(self) -> Probes:
        return {"prefix": (prefix_problem(self.prefix), None)}

    def fail_if_prefix_missing(self, op: str) -> None:
        """Called when ``op`` found no file: if the prefix itself is gone, that is
        the storage failing (503), not an id without a file (404)."""
        if not os.path.isdir(self.prefix):
            raise BackendUnavailable(
                f"the file system is unavailable ({op}: the archive directory is missing)",
                detail=f"{op} failed: archive directory missing",
            )

    def path_for(self, ident: str) -> str:
        if self.use_id2filename:
            return self.prefix + id2filename(parse_integer(ident))
        if self.paths:
            return os.path.join(self.prefix, parse_path(ident))
        return os.path.join(self.prefix, parse_safe_name(ident))

    def _relative(self, path: str) -> str:
        return path[len(self.prefix) + 1 :]

    def _open_below(self, path: str, flags: int) -> int:
        """``path`` (below the prefix) opened with ``flags``, no symlink followed on the way:
        ELOOP when one is met."""
        return beneath.open_below(self.prefix, self._relative(path), flags)

    def _lstat(self, path: str) -> os.stat_result:
        """The lstat of ``path``; under paths, with no symlink followed above it either (one is ELOOP)."""
        if not self.paths:
            return os.stat(path, follow_symlinks=False)  # a symlink under an id is no stored file
        fd = self._open_below(path, os.O_PATH)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def status(self, path: str) -> Optional[FileStatus]:
        try:
            st = self._lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("stat")
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # a symlink on the way: no stored file
                raise
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return FileStatus(path, st.st_size, st.st_mtime, st.st_ctime, (st.st_size,), "disk", etag_of(st))

    def exists(self, path: str) -> bool:
        try:
            return stat.S_ISREG(self._lstat(path).st_mode)
        except (OSError, ValueError):
            return False

    def open_read(self, path: str) -> PosixReader:
        try:
            reader = PosixReader(path, open_stored(path, self._open_below) if self.paths else None)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("open")
            raise
        if reader.size >= ADVISE_FROM:
            fileio.fadvise(reader.fileno(), 0, 0, fileio.FADV_SEQUENTIAL)
        return reader

    def create(
        self, path: str, *, size_hint: Optional[int] = None, replace: bool = False, parents: bool = True
    ) -> PosixWriter:
        """A writer of ``path``.  Under ids its directory is made when missing (the id2filename
        levels); under paths never, whatever ``parents`` says: a missing one is FileNotFoundError,
        a file in its place NotADirectoryError (the client MKCOLs first)."""
        try:
            if not self.paths:
                return PosixWriter(path, size_hint, replace, self.syncer, self.prefix, self.flusher)
            dir_fd, _ = self._directory_of(path)
            return PosixWriter(path, size_hint, replace, self.syncer, self.prefix, self.flusher, dir_fd=dir_fd)
        except FileNotFoundError:
            self.fail_if_prefix_missing("create")
            raise

    # -- collections (namespace = paths) --------------------------------------------

    def _directory_of(
        self, path: str, op: str = "open", detail: str = "a collection in the path is a symlink"
    ) -> Tuple[int, str]:
        """``(fd, name)``: a descriptor (the caller's to close) of the directory holding ``path``,
        opened below the prefix without following a symlink, and the last name of ``path``.
        Forbidden (``detail``) when a directory on the way is a symlink; a missing prefix is the
        storage failing ``op``."""
        parts = self._relative(path).split("/")
        try:
            prefix_fd = os.open(self.prefix, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.fail_if_prefix_missing(op)
            raise
        try:
            return _beneath(beneath.open_dir, prefix_fd, parts[:-1], detail), parts[-1]
        finally:
            os.close(prefix_fd)

    @contextlib.contextmanager
    def _in_directory(self, path: str) -> Iterator[Tuple[int, str]]:
        dir_fd, name = self._directory_of(path)
        try:
            yield dir_fd, name
        finally:
            os.close(dir_fd)

    def collection(self, path: str) -> Optional[CollectionStatus]:
        try:
            if path == self.prefix:
                st = os.stat(self.prefix)
            else:
                st = self._lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("stat")
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            return None
        return CollectionStatus(path, st.st_mtime, st.st_ctime) if stat.S_ISDIR(st.st_mode) else None

    def make_collection(self, path: str) -> None:
        with self._in_directory(path) as (dir_fd, name):
            os.mkdir(name, COLLECTION_MODE, dir_fd=dir_fd)
            fileio.fsync(dir_fd)  # the new entry is durable before the client hears 201

    def remove_collection(self, path: str) -> None:
        with self._in_directory(path) as (dir_fd, name):
            if not stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a collection")
            os.rmdir(name, dir_fd=dir_fd)  # ENOTEMPTY: an archive is never removed recursively
            fileio.fsync(dir_fd)

    def members(self, path: str, limit: int) -> Iterator[Member]:
        if path == self.prefix:
            fd = os.open(self.prefix, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            fd = self._open_below(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(fd) as listing:  # by descriptor: each stat is relative to the held directory
                # dot names are temporary files, sidecars, anything not stored
                candidates = (_member(path, entry) for entry in listing if not entry.name.startswith("."))
                yield from tree.first_members(candidates, limit)
        finally:
            os.close(fd)

    def rename(self, source: str, path: str, *, replace: bool) -> None:
        with self._in_directory(source) as (src_fd, src_name), self._in_directory(path) as (dst_fd, dst_name):
            if not stat.S_ISREG(os.stat(src_name, dir_fd=src_fd, follow_symlinks=False).st_mode):
                raise FileNotFoundError(errno.ENOENT, "no stored file")
            if replace:
                os.replace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            else:
                fileio.rename_noreplace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            # the sidecar follows its file; one left at the new name belonged to a file gone now
            src_sidecar = os.path.basename(checksum_store.sidecar_path(src_name))
            dst_sidecar = os.path.basename(checksum_store.sidecar_path(dst_name))
            try:
                os.replace(src_sidecar, dst_sidecar, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except FileNotFoundError:
                _unlink_at(dst_fd, dst_sidecar)
            fileio.fsync(dst_fd)
            if not os.path.samestat(os.fstat(src_fd), os.fstat(dst_fd)):
                fileio.fsync(src_fd)

    def space(self) -> Tuple[int, int]:
        st = os.statvfs(self.prefix)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize

    def stage(self, path: str) -> bool:
        """Everything on a posix file system is on disk already."""
        if not self.exists(path):
            self.fail_if_prefix_missing("stage")
            raise FileNotFoundError(errno.ENOENT, "no such file")
        return True

    def release(self, path: str) -> None:
        """Nothing to evict: a posix file system has only the disk."""

    def move(self, source: str, path: str) -> None:
        """PATCH: move the server-side file ``source`` under the id's ``path``.

        Every step works on descriptors: the source's directory is opened below a
        held descriptor of its root with symlinks refused, the file itself with
        O_NOFOLLOW and checked (regular, one link), and renames name entries of
        held directories, so an uploader swapping components for symlinks meanwhile
        can neither get a file from elsewhere archived nor make a chmod land outside.
        """
        with self._open_source(source) as src:
            with self._open_target_dir(path) as target_fd:
                if self._must_copy(src.st):
                    self._copy_then_remove(src, path)
                else:
                    try:
                        self._rename_in(src, target_fd, os.path.basename(path))
                    except OSError as exc:
                        if exc.errno != errno.EXDEV:
                            raise
                        self._copy_then_remove(src, path)
            if src.under_prefix:  # an archived file's sidecar goes with it
                _unlink_at(src.dir_fd, os.path.basename(checksum_store.sidecar_path(src.name)))
            fileio.fsync(src.dir_fd)

    @contextlib.contextmanager
    def _open_source(self, source: str) -> Iterator["Source"]:
        """The checked source: a Source (directory and file descriptors, stat), closed after."""
        # Lexical, never resolved: the components are opened one by one below,
        # refusing symlinks, so what is checked there is what is opened here.
        root, parts = moves.allowed_source(source, self.move_roots)
        name = parts.pop()
        try:
            root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if root == self.prefix:
                self.fail_if_prefix_missing("move")
            raise
        try:
            dir_fd = _beneath(beneath.open_dir, root_fd, parts, "move: a source component is a symlink")
        finally:
            os.close(root_fd)
        try:
            fd = _open_source_file(dir_fd, name)
            try:
                st = os.fstat(fd)
                moves.check_source(st.st_mode, st.st_nlink)
                yield Source(dir_fd, name, fd, st, self._under_prefix(source))
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)

    def _under_prefix(self, source: str) -> bool:
        parts, prefix = moves.components(source) or [], moves.components(self.prefix) or []
        return parts[: len(prefix)] == prefix

    @contextlib.contextmanager
    def _open_target_dir(self, path: str) -> Iterator[int]:
        """A descriptor of the id's directory (made if missing, except under paths, where only MKCOL
        makes collections: 409), opened below the prefix without symlinks."""
        if not self.paths:
            try:
                make_dirs(os.path.dirname(path), self.prefix)
            except FileNotFoundError:
                self.fail_if_prefix_missing("move")
                raise
        try:
            fd, _ = self._directory_of(path, "move", "move: a directory of the id is a symlink")
        except (FileNotFoundError, NotADirectoryError):
            if not self.paths:
                raise
            raise no_collection() from None
        try:
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _must_copy(st: os.stat_result) -> bool:
        """A rename keeps the owner; only root can give the file to the service, else it is copied."""
        return st.st_uid != os.geteuid() and os.geteuid() != 0

    def _rename_in(self, src: "Source", target_fd: int, name: str) -> None:
        """Rename the source to a temporary name beside the id, check it is the file that was
        checked, make it the service's (owner, read-only, durable), then publish it."""
        temp = tempfiles.unique_name()
        # Locked before it has a temporary name, so a sweep never takes it for a dead upload.
        fcntl.flock(src.fd, fcntl.LOCK_EX)
        os.rename(src.name, temp, src_dir_fd=src.dir_fd, dst_dir_fd=target_fd)  # EXDEV: nothing moved
        taken = False
        try:
            moved = os.stat(temp, dir_fd=target_fd, follow_symlinks=False)
            if (moved.st_dev, moved.st_ino) != (src.st.st_dev, src.st.st_ino) or moved.st_nlink != 1:
                raise Forbidden("the source changed while it was being moved", detail="move: source swapped")
            taken = True
            _take_over(src.fd, src.st)
            fileio.rename_noreplace(temp, name, src_dir_fd=target_fd, dst_dir_fd=target_fd)
        except BaseException as exc:
            if taken:
                _give_back(src.fd, src.st)
            _put_back(target_fd, temp, src)
            if isinstance(exc, FileExistsError):
                raise id_taken("move") from None
            raise
        # its bytes were never hashed here: an old sidecar of the id is not its checksum
        _unlink_at(target_fd, os.path.basename(checksum_store.sidecar_path(name)))
        fileio.fsync(target_fd)

    def _copy_then_remove(self, src: "Source", path: str) -> None:
        """A move across file systems (or of a file only a copy can make the service's):
        a durable copy the service owns, with its checksum, first; the source removed last."""
        with self.create(path, size_hint=src.st.st_size) as writer:
            computed = _copy_hashing(src.fd, writer, self.checksum_algorithms)
            writer.commit(src.st.st_mtime, computed)
        try:
            now = os.stat(src.name, dir_fd=src.dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (src.st.st_dev, src.st.st_ino):
                os.unlink(src.name, dir_fd=src.dir_fd)
            else:
                log.warning("PATCH copied a file whose name now holds another one; that one is left alone")
        except OSError as exc:  # the copy is stored: the move is done, the source stays behind
            log.warning("PATCH could not remove the source of a copied file: %s", describe(exc))

    def delete(self, path: str) -> None:
        if self.paths:
            self._delete_below(path)
            return
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("delete")
            raise
        checksum_store.remove_sidecar(path)
        fileio.fsync_dir(os.path.dirname(path))

    def _delete_below(self, path: str) -> None:
        with self._in_directory(path) as (dir_fd, name):
            if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise FileNotFoundError(errno.ENOENT, "no stored file")
            os.unlink(name, dir_fd=dir_fd)
            _unlink_at(dir_fd, os.path.basename(checksum_store.sidecar_path(name)))
            fileio.fsync(dir_fd)

    def checksums(self, path: str) -> Checksums:
        """The stored ``{algorithm: digest}`` of the file at ``path``, {} when none."""
        try:
            return checksum_store.read(path)
        except (FileNotFoundError, NotADirectoryError):
            return {}

    def add_checksums(self, path: str, reader: Reader, computed: Checksums) -> Checksums:
        """Keep ``computed`` (digests of the stored bytes) with the file's stored ones; the whole set."""
        return checksum_store.add(path, reader.fileno(), computed)

    def stored_paths(self) -> Iterator[str]:
        """Every stored file under the prefix (never temporary files, sidecars or other dot names)."""
        return tree.stored_files(self.prefix, tree.list_local)

    def sweep(self) -> int:
        """Remove temporary files older than sweep_min_age that no live upload holds; return how many.

        Files and directories may vanish while it walks (another sweep, an
        operator): those are skipped, never errors.
        """
        return sum(
            tempfiles.remove_if_dead(entry.path, self.sweep_min_age)
            for entry in tree.temp_files(self.prefix, tree.list_local)
        )

    def confirm_durable(self, path: str) -> None:
        """Make the stored file at ``path`` and its directory entry durable (an identical PUT's 201):
        fsync of the file (whatever the method: no write of it precedes this one), then the
        method's step after a rename."""
        try:
            fd = self._open_below(path, os.O_RDONLY) if self.paths else os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                serving.may_block()  # an fsync (and its directory's) follows
                fileio.fsync(fd)
                steps = self.flusher.for_dev(os.fstat(fd).st_dev)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = exc.strerror or "error"
            raise StoredNotDurable(
                f"the file is stored under the id, but the storage could not confirm that it is durable ({reason})",
                detail=f"confirm: fsync failed: {reason}",
            ) from None
        sync_published(steps.after_publish, os.path.dirname(path))

    def stored_size(self, path: str) -> Optional[int]:
        """The size of the stored file (never staging, never asking a database), or None."""
        try:
            st = self._lstat(path) if self.paths else os.stat(path)
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None


def _member(directory: str, entry: "os.DirEntry[str]") -> Optional[Member]:
    """The Member of a listed entry (stat relative to the listed directory's descriptor), None for
    anything else (a symlink, a device) or a name gone meanwhile."""
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    path = os.path.join(directory, entry.name)
    if stat.S_ISDIR(st.st_mode):
        return Member(entry.name, None, CollectionStatus(path, st.st_mtime, st.st_ctime))
    if stat.S_ISREG(st.st_mode) and not is_temp_name(entry.name):
        status = FileStatus(path, st.st_size, st.st_mtime, st.st_ctime, (st.st_size,), "disk", etag_of(st))
        return Member(entry.name, status, None)
    return None


# -- PATCH ------------------------------------------------------------------------


class Source(NamedTuple):
    """A checked PATCH source: its directory and the file, both open, and the file's fstat."""

    dir_fd: int
    name: str
    fd: int
    st: os.stat_result
    under_prefix: bool


def _beneath(open_dir: Callable[[int, List[str]], int], root_fd: int, parts: List[str], detail: str) -> int:
    try:
        return open_dir(root_fd, parts)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EXDEV):
            raise Forbidden("the path goes through a symlink, which the archive never follows", detail=detail) from None
        raise


def _open_source_file(dir_fd: int, name: str) -> int:
    try:
        return os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Forbidden(
                "the source is a symlink, which PATCH never follows", detail="move: source is a symlink"
            ) from None
        if exc.errno == errno.ENXIO:
            raise moves.not_regular() from None
        raise


def _take_over(fd: int, st: os.stat_result) -> None:
    """Make the moved-in file the service's: no foreign checksum, its owner, read-only, on disk."""
    uid, gid = os.geteuid(), os.getegid()
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)  # root: anyone's file; otherwise only the group of our own
    try:
        checksum_store.drop_xattr(fd)
    except PermissionError:  # a non-root owner needs write permission to change user xattrs
        os.fchmod(fd, 0o600)
        checksum_store.drop_xattr(fd)
    os.fchmod(fd, FILE_MODE)
    fileio.fsync(fd)


def _give_back(fd: int, st: os.stat_result) -> None:
    """Undo ``_take_over``'s owner and mode (a move that will not happen after all)."""
    with contextlib.suppress(OSError):
        os.fchown(fd, st.st_uid, st.st_gid)
    with contextlib.suppress(OSError):
        os.fchmod(fd, stat.S_IMODE(st.st_mode))


def _put_back(target_fd: int, temp: str, src: Source) -> None:
    """Return what a failed move renamed to ``temp`` to the source's name, else remove it (never following)."""
    try:
        fileio.rename_noreplace(temp, src.name, src_dir_fd=target_fd, dst_dir_fd=src.dir_fd)
        return
    except OSError as exc:
        log.warning("PATCH could not return a file it did not move: %s; it is removed", describe(exc))
    try:
        os.unlink(temp, dir_fd=target_fd)
    except IsADirectoryError:  # a directory swapped in for the source
        with contextlib.suppress(OSError):
            os.rmdir(temp, dir_fd=target_fd)
    except OSError:
        pass


def _unlink_at(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _copy_hashing(fd: int, writer: PosixWriter, algorithms: Tuple[str, ...]) -> Optional[Checksums]:
    """Copy the open file ``fd`` into ``writer``; its ``{algorithm: digest}``, None without algorithms."""
    if not algorithms:
        fileio.copy_fd(fd, writer.fileno(), os.fstat(fd).st_size)
        return None
    digesting = digests.digesting(algorithms)
    block = bytearray(COPY_BLOCK)
    view = memoryview(block)
    while True:
        n = os.readv(fd, [block])
        if n == 0:
            return digesting.digests()
        digesting.update(view[:n])
        writer.write(view[:n])
