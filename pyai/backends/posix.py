"""The posix backend: one regular file per id under a prefix directory.

Writes go to a temporary file in the target directory (a name no id can
address, locked from before it has that name until it is published; see
``tempfiles``), are fsynced, stamped and made read-only,
then published with a rename that refuses to replace; the directory is fsynced
before the client hears 201.  Reads hand gunicorn a real descriptor so the
kernel sends the bytes (sendfile).
"""

import errno
import io
import logging
import os
import stat

from .. import fileio
from ..dirsync import DirectorySyncer
from ..errors import BackendUnavailable, Conflict, Forbidden, StoredNotDurable
from ..ids import id2filename, parse_integer, parse_safe_name
from . import checksum_store, tempfiles
from .base import FILE_MODE, TEMP_PREFIX, FileStatus, publishing

# Hints to the page cache only pay off for files that take more than a few reads.
ADVISE_FROM = 1 << 20
# A directory fsync that fails after the rename is tried this often before the
# client hears that its file is stored but not known to be durable.
DIR_SYNC_ATTEMPTS = 3
log = logging.getLogger("pyai")


class PosixReader(io.FileIO):
    """A stored file open for reading, with the facts GET needs from one fstat."""

    def __init__(self, path):
        super().__init__(path, "rb")
        st = os.fstat(self.fileno())
        if not stat.S_ISREG(st.st_mode):
            self.close()
            raise FileNotFoundError(errno.ENOENT, "not a regular file")
        self.size = st.st_size
        self.mtime = st.st_mtime
        # Files are write-once, so inode, size and mtime identify the bytes.
        self.etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        self.path = path

    def checksum(self):
        """The stored ``(algorithm, digest)`` of this file, or None."""
        return checksum_store.read(self.path, self.fileno())


class PosixWriter:
    """A file being received into ``<dir>/.pyai-tmp-<token>`` (locked from the start); see ``commit``."""

    def __init__(self, path, size_hint, replace, syncer, root):
        # size_hint: accepted for the protocol; space is reserved as the bytes arrive (pyai.receive)
        self.path = path
        self.syncer = syncer
        self.directory = os.path.dirname(path)
        self.replace = replace
        self.fd, self.temp = _open_temp(self.directory, root, syncer)

    def fileno(self):
        return self.fd

    def write(self, data):
        fileio.write_all(self.fd, data)

    def commit(self, mtime, checksum=None):
        """Make the bytes durable and read-only, then publish them under the id,
        with their ``(algorithm, digest)`` when given (see checksum_store).

        StoredNotDurable when the file is stored but its directory entry could
        not be made durable (a retry of the same bytes is then answered 201)."""
        with publishing(self):
            # before fchmod: user xattrs need a writable file
            in_xattr = checksum is None or checksum_store.set_on_temp(self.fd, checksum)
            os.utime(self.fd, (mtime, mtime))
            os.fchmod(self.fd, FILE_MODE)
            fileio.fsync(self.fd)
            # Published while still open and locked, so a sweep sees it alive to the end.
            if self.replace:
                os.replace(self.temp, self.path)
            else:
                fileio.rename_noreplace(self.temp, self.path)
        self.temp = None
        try:
            if not in_xattr:  # only once the file is the id's: a 409 must not touch the old sidecar
                checksum_store.write_sidecar(self.path, self.fd, checksum)
        except OSError as exc:  # the file is stored: its checksum is unknown, not wrong
            log.warning("could not write the checksum sidecar of a stored file: %s", exc)
        finally:
            os.close(self.fd)
            self.fd = -1
        sync_published(self.syncer, self.directory)

    def abort(self):
        """Forget everything written (safe to call more than once)."""
        if self.temp:
            # removed while still locked: no sweep ever sees it unlocked
            try:
                os.unlink(self.temp)
            except FileNotFoundError:
                pass
            self.temp = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.abort()


def sync_published(syncer, directory):
    """fsync ``directory`` after a rename into it, a few times; StoredNotDurable when it keeps failing.

    Retrying helps against transient failures; a file system that lost the
    entry (ext4 aborting its journal) fails every later fsync too, so a retry
    that succeeds is not a lie about an earlier loss.
    """
    for attempt in range(1, DIR_SYNC_ATTEMPTS + 1):
        try:
            syncer.synced(directory)
            return
        except OSError as exc:
            failure = exc
            log.warning("fsync of a directory after publishing failed (attempt %d of %d): %s",
                        attempt, DIR_SYNC_ATTEMPTS, exc.strerror)
    reason = (failure.strerror or "error").split(": ")[-1]
    raise StoredNotDurable(
        "the file is stored under the id, but the storage could not confirm that it is durable "
        f"(directory fsync failed: {reason}); a retry with the same bytes is answered 201 once it can",
        detail=f"publish: stored, directory fsync failed: {reason}",
    ) from None


def _open_temp(directory, root, syncer):
    """``(fd, path)`` of a new locked temporary file in ``directory`` (made, with its parents, if missing)."""
    try:
        return tempfiles.create_locked(directory)
    except FileNotFoundError:
        make_dirs(directory, root, syncer.synced)
        return tempfiles.create_locked(directory)


def make_dirs(directory, root, sync_dir=None):
    """mkdir -p below ``root``; returns once every level's entry in its parent is durable.

    Whoever makes a level, or finds it made (another thread may have won the
    mkdir and not fsynced the parent yet), fsyncs the parent before going on:
    ``sync_dir`` (a DirectorySyncer's ``synced``, so racing threads share one
    fsync) or fileio.fsync_dir.

    ``root`` itself is never created: when it is missing (a volume not mounted,
    a directory moved away) FileNotFoundError says so, instead of a fresh empty
    archive appearing in its place.
    """
    sync_dir = sync_dir or fileio.fsync_dir
    if len(directory) <= len(root):
        if os.path.isdir(directory):
            return
        raise FileNotFoundError(errno.ENOENT, "the archive directory is missing")
    try:
        os.mkdir(directory)
    except FileExistsError:
        pass
    except FileNotFoundError:
        make_dirs(os.path.dirname(directory), root, sync_dir)
        try:
            os.mkdir(directory)
        except FileExistsError:
            pass
    sync_dir(os.path.dirname(directory))


class PosixBackend:
    """Files under ``config.prefix``, by safe name or by the id2filename layout."""

    name = "posix"

    def __init__(self, config):
        self.prefix = config.prefix
        self.use_id2filename = config.use_id2filename
        # PATCH may take files from these trees only (all resolved at start-up).
        self.move_roots = (config.prefix,) + tuple(config.patch_roots)
        self.syncer = DirectorySyncer()
        self.sweep_min_age = config.sweep_min_age

    def check(self):
        """A local file system has no server to be down; failures surface per operation."""

    def fail_if_prefix_missing(self, op):
        """Called when ``op`` found no file: if the prefix itself is gone, that is
        the storage failing (503), not an id without a file (404)."""
        if not os.path.isdir(self.prefix):
            raise BackendUnavailable(
                f"the file system is unavailable ({op}: the archive directory is missing)",
                detail=f"{op} failed: archive directory missing",
            )

    def path_for(self, ident):
        if self.use_id2filename:
            return self.prefix + id2filename(parse_integer(ident))
        return os.path.join(self.prefix, parse_safe_name(ident))

    def status(self, path):
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("stat")
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return FileStatus(path, st.st_size, st.st_mtime, st.st_ctime, (st.st_size,), "disk")

    def exists(self, path):
        return os.path.isfile(path)

    def open_read(self, path):
        try:
            reader = PosixReader(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("open")
            raise
        if reader.size >= ADVISE_FROM:
            fileio.fadvise(reader.fileno(), 0, 0, fileio.FADV_SEQUENTIAL)
        return reader

    def create(self, path, *, size_hint=None, replace=False):
        try:
            return PosixWriter(path, size_hint, replace, self.syncer, self.prefix)
        except FileNotFoundError:
            self.fail_if_prefix_missing("create")
            raise

    def stage(self, path):
        """Everything on a posix file system is on disk already."""
        if not self.exists(path):
            self.fail_if_prefix_missing("stage")
            raise FileNotFoundError(errno.ENOENT, "no such file")
        return True

    def move(self, source, path):
        real = os.path.realpath(source)
        if not self._movable(real):
            raise Forbidden(
                "the source is not under the archive prefix or a configured patch root",
                detail="move: source outside the allowed roots",
            )
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            raise Forbidden("the source is not a regular file", detail="move: source is not a regular file")
        try:
            make_dirs(os.path.dirname(path), self.prefix)
        except FileNotFoundError:
            self.fail_if_prefix_missing("move")
            raise
        try:
            fileio.rename_noreplace(real, path)
        except FileExistsError:
            raise Conflict("the id already holds a file", detail="move: id already holds a file") from None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_then_remove(real, path, st.st_mtime)
        else:
            # its bytes were never hashed here: whatever checksum it carries is not ours
            checksum_store.forget(path)
            os.chmod(path, FILE_MODE)
            fileio.fsync_dir(os.path.dirname(path))
        if real.startswith(self.prefix.rstrip("/") + "/"):  # an archived file's sidecar goes with it
            checksum_store.remove_sidecar(real)
        fileio.fsync_dir(os.path.dirname(real))

    def _movable(self, real):
        if os.path.basename(real).startswith(TEMP_PREFIX):
            return False
        return any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.move_roots)

    def _copy_then_remove(self, real, path, mtime):
        """A move across file systems: a durable copy first, the source removed last."""
        with open(real, "rb") as src, self.create(path, size_hint=os.fstat(src.fileno()).st_size) as writer:
            fileio.copy_fd(src.fileno(), writer.fileno(), os.fstat(src.fileno()).st_size)
            writer.commit(mtime)
        os.unlink(real)

    def delete(self, path):
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            self.fail_if_prefix_missing("delete")
            raise
        checksum_store.remove_sidecar(path)
        fileio.fsync_dir(os.path.dirname(path))

    def checksum(self, path):
        """The stored ``(algorithm, digest)`` of the file at ``path``, or None."""
        try:
            return checksum_store.read(path)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def stored_paths(self):
        """Every stored file under the prefix (never temporary files, sidecars or other dot names)."""
        pending = [self.prefix]
        while pending:
            try:
                entries = sorted(os.scandir(pending.pop()), key=lambda entry: entry.name, reverse=True)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry.path

    def sweep(self):
        """Remove temporary files older than sweep_min_age that no live upload holds; return how many.

        Files and directories may vanish while it walks (another sweep, an
        operator): those are skipped, never errors.
        """
        removed = 0
        pending = [self.prefix]
        while pending:
            try:
                with os.scandir(pending.pop()) as listing:
                    entries = list(listing)
            except OSError:
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    pending.append(entry.path)
                elif tempfiles.is_temp_name(entry.name) and tempfiles.remove_if_dead(entry.path, self.sweep_min_age):
                    removed += 1
        return removed

    def confirm_durable(self, path):
        """Make the stored file at ``path`` and its directory entry durable (an identical PUT's 201)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fileio.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = (exc.strerror or "error").split(": ")[-1]
            raise StoredNotDurable(
                f"the file is stored under the id, but the storage could not confirm that it is durable ({reason})",
                detail=f"confirm: fsync failed: {reason}",
            ) from None
        sync_published(self.syncer, os.path.dirname(path))

    def stored_size(self, path):
        """The size of the stored file (never staging, never asking a database), or None."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None
