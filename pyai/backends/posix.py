"""The posix backend: one regular file per id under a prefix directory.

Writes go to a temporary file in the target directory (a name no id can
address, locked while it is written), are fsynced, stamped and made read-only,
then published with a rename that refuses to replace; the directory is fsynced
before the client hears 201.  Reads hand gunicorn a real descriptor so the
kernel sends the bytes (sendfile).
"""

import errno
import fcntl
import io
import itertools
import logging
import os
import secrets
import stat

from .. import fileio
from ..dirsync import DirectorySyncer
from ..errors import BackendUnavailable, Conflict, Forbidden
from ..ids import id2filename, parse_integer, parse_safe_name
from . import checksum_store
from .base import FILE_MODE, TEMP_PREFIX, FileStatus, publishing

# Hints to the page cache only pay off for files that take more than a few reads.
ADVISE_FROM = 1 << 20

# Temporary names: unique per host (random part), process (pid) and upload
# (counter) without asking the kernel for randomness on every PUT.
_HOST_TOKEN = secrets.token_hex(4)
log = logging.getLogger("pyai")
_uploads = itertools.count()


def _temp_name():
    return f"{TEMP_PREFIX}{_HOST_TOKEN}-{os.getpid()}-{next(_uploads)}"


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
    """A file being received into ``<dir>/.pyai-tmp-<random>``; see ``commit``."""

    def __init__(self, path, size_hint, replace, syncer, root):
        self.path = path
        self.syncer = syncer
        self.directory = os.path.dirname(path)
        self.replace = replace
        self.temp = os.path.join(self.directory, _temp_name())
        self.fd = _open_temp(self.temp, self.directory, root)
        try:
            # The lock tells a start-up sweep (perhaps of another instance) that
            # this file is alive; the kernel drops it if the process dies.
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self.abort()
            raise

    def fileno(self):
        return self.fd

    def write(self, data):
        fileio.write_all(self.fd, data)

    def commit(self, mtime, checksum=None):
        """Make the bytes durable and read-only, then publish them under the id,
        with their ``(algorithm, digest)`` when given (see checksum_store)."""
        with publishing(self):
            # before fchmod: user xattrs need a writable file
            in_xattr = checksum is None or checksum_store.set_on_temp(self.fd, checksum)
            os.utime(self.fd, (mtime, mtime))
            os.fchmod(self.fd, FILE_MODE)
            fileio.fsync(self.fd)
            # Published while still open, so the sweep's lock test sees it alive to the end.
            if self.replace:
                os.replace(self.temp, self.path)
            else:
                fileio.rename_noreplace(self.temp, self.path)
        self.temp = None
        try:
            if not in_xattr:  # only once the file is the id's: a 409 must not touch the old sidecar
                checksum_store.write_sidecar(self.path, self.fd, checksum, _temp_name())
        except OSError as exc:  # the file is stored: its checksum is unknown, not wrong
            log.warning("could not write the checksum sidecar of a stored file: %s", exc)
        finally:
            os.close(self.fd)
            self.fd = -1
        self.syncer.synced(self.directory)

    def abort(self):
        """Forget everything written (safe to call more than once)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.temp:
            try:
                os.unlink(self.temp)
            except FileNotFoundError:
                pass
            self.temp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.abort()


def _open_temp(temp, directory, root):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(temp, flags, 0o600)
    except FileNotFoundError:
        make_dirs(directory, root)
        return os.open(temp, flags, 0o600)


def make_dirs(directory, root):
    """mkdir -p below ``root``, fsyncing each parent it adds an entry to, so new levels survive a crash.

    ``root`` itself is never created: when it is missing (a volume not mounted,
    a directory moved away) FileNotFoundError says so, instead of a fresh empty
    archive appearing in its place.
    """
    if len(directory) <= len(root):
        if os.path.isdir(directory):
            return
        raise FileNotFoundError(errno.ENOENT, "the archive directory is missing")
    try:
        os.mkdir(directory)
    except FileExistsError:
        return
    except FileNotFoundError:
        make_dirs(os.path.dirname(directory), root)
        try:
            os.mkdir(directory)
        except FileExistsError:
            return
    fileio.fsync_dir(os.path.dirname(directory))


class PosixBackend:
    """Files under ``config.prefix``, by safe name or by the id2filename layout."""

    name = "posix"

    def __init__(self, config):
        self.prefix = config.prefix
        self.use_id2filename = config.use_id2filename
        # PATCH may take files from these trees only (all resolved at start-up).
        self.move_roots = (config.prefix,) + tuple(config.patch_roots)
        self.syncer = DirectorySyncer()

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
        """Remove temporary files that no live upload holds; return how many."""
        removed = 0
        pending = [self.prefix]
        while pending:
            try:
                entries = list(os.scandir(pending.pop()))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.name.startswith(TEMP_PREFIX) and _remove_if_unlocked(entry.path):
                    removed += 1
        return removed


def _remove_if_unlocked(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # an upload in progress holds it
    else:
        os.unlink(path)
        return True
    finally:
        os.close(fd)
