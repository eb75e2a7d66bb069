"""Where a posix file's checksums are kept: an xattr, else a sidecar file.

The xattr ``user.pyai.checksum`` (text ``sha256:<hex> md5:<hex> adler32:<hex>``,
see ``checksums.encode_set``; earlier versions wrote one ``sha256:<hex>``) is
set on the temporary file before it is published, so it is atomic with the
file, moves with it on rename and vanishes with it on unlink: one syscall per
PUT and per HEAD/GET.  Where the file system refuses user xattrs the checksums
go to the sidecar ``<dir>/.pyai-sum-<name>`` (no id can name a file starting
with ``.``), which also records the inode and size of the file it describes: a
sidecar left over from a replaced or moved file is ignored, never believed.

A digest computed later (``add``) replaces the whole set in one setxattr (or one
rename of the sidecar), under an exclusive flock of the stored file so that
processes adding different algorithms at once do not drop each other's.
"""

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from typing import Dict, Iterator, Optional

from pyai.archive import checksums as digests
from pyai.backends import tempfiles
from pyai.backends.base import FILE_MODE, Checksums

XATTR = "user.pyai.checksum"
SIDECAR_PREFIX = ".pyai-sum-"
NAME_MAX = 255  # bytes in one file name (Linux file systems)
# errno values of a file system (or kernel) without user xattrs
_NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def sidecar_path(path: str) -> str:
    directory, name = os.path.split(path)
    sidecar = SIDECAR_PREFIX + name
    if len(os.fsencode(sidecar)) > NAME_MAX:  # a long id: name the sidecar by a hash of it
        sidecar = SIDECAR_PREFIX + "~" + hashlib.sha256(os.fsencode(name)).hexdigest()
    return os.path.join(directory, sidecar)


def sidecar_text(checksums: Checksums, st: os.stat_result) -> str:
    """``<checksums...> <inode> <size>``: the inode and size are the last two words."""
    return f"{digests.encode_set(checksums)} {st.st_ino} {st.st_size}\n"


def parse_sidecar(text: str, st: os.stat_result) -> Checksums:
    """The checksums a sidecar holds, if it describes the file ``st`` (else {})."""
    fields = text.split()
    if len(fields) < 3 or fields[-2:] != [str(st.st_ino), str(st.st_size)]:
        return {}
    return digests.decode_set(" ".join(fields[:-2]))


def set_on_temp(fd: int, checksums: Checksums) -> bool:
    """Attach the checksums to the unpublished file; False when xattrs are unsupported
    (the caller then writes a sidecar once the file is published)."""
    try:
        os.setxattr(fd, XATTR, digests.encode_set(checksums).encode("ascii"))
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return False
        raise
    return True


def write_sidecar(path: str, fd: int, checksums: Checksums) -> None:
    """Write the sidecar of the just-published ``path`` (open as ``fd``): a temporary
    file, locked before it has a sweepable name (see tempfiles), renamed over any old sidecar."""
    side, temp = tempfiles.create_locked(os.path.dirname(path), 0o444)
    try:
        os.write(side, sidecar_text(checksums, os.fstat(fd)).encode("ascii"))
        os.fsync(side)
        os.replace(temp, sidecar_path(path))
    except BaseException:
        _unlink(temp)
        raise
    finally:
        os.close(side)


def read(path: str, fd: Optional[int] = None) -> Checksums:
    """The stored ``{algorithm: digest}`` of the file, {} when it has none."""
    try:
        value = os.getxattr(path if fd is None else fd, XATTR)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return _read_sidecar(path, fd)
        if exc.errno == errno.ENODATA:
            return {}
        raise
    return digests.decode_set(value.decode("ascii", "replace"))


def _read_sidecar(path: str, fd: Optional[int]) -> Checksums:
    try:
        with open(sidecar_path(path), encoding="ascii", errors="replace") as handle:
            text = handle.read(1024)
        st = os.stat(path) if fd is None else os.fstat(fd)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return parse_sidecar(text, st)


def add(path: str, fd: int, computed: Dict[str, bytes]) -> Checksums:
    """Keep the digests ``computed`` from the stored file ``path`` (open as ``fd``) beside
    the ones it has; the whole set after.

    Under an exclusive flock of the file the set is read again, merged and
    written back in one setxattr: processes adding different algorithms at
    once keep both.  A read-only file (mode 0444) has user xattrs only for
    root; anyone else makes it owner-writable for the one call, and back."""
    with _locked(fd):
        stored = read(path, fd)
        merged = {**computed, **stored}  # a digest already stored stays as it is
        if merged == stored:
            return stored
        try:
            _set_xattr(fd, digests.encode_set(merged).encode("ascii"))
        except OSError as exc:
            if exc.errno not in _NO_XATTRS:
                raise
            write_sidecar(path, fd, merged)
    return merged


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _set_xattr(fd: int, value: bytes) -> None:
    try:
        os.setxattr(fd, XATTR, value)
        return
    except PermissionError:
        pass
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode != FILE_MODE:  # not an archived file as pyai leaves it: not ours to change
        raise PermissionError(errno.EACCES, "the stored file is not read-only as archived")
    os.fchmod(fd, FILE_MODE | stat.S_IWUSR)  # on the descriptor: no path to swap meanwhile
    try:
        os.setxattr(fd, XATTR, value)
    finally:
        os.fchmod(fd, FILE_MODE)


def forget(path: str) -> None:
    """Drop any checksum of ``path`` (a file PATCH moved in: its bytes were never hashed here)."""
    for attempt in range(2):
        try:
            os.removexattr(path, XATTR)
        except OSError as exc:
            if exc.errno == errno.EACCES and attempt == 0:
                os.chmod(path, 0o600)  # user xattrs of a read-only file: the caller sets the final mode
                continue
            if exc.errno not in _NO_XATTRS and exc.errno != errno.ENODATA:
                raise
        break
    remove_sidecar(path)


def drop_xattr(fd: int) -> None:
    """Remove the checksum xattr of the open file ``fd`` (a file PATCH moves in keeps the
    xattrs its writer set, and a checksum nobody here computed is not believed)."""
    try:
        os.removexattr(fd, XATTR)
    except OSError as exc:
        if exc.errno not in _NO_XATTRS and exc.errno != errno.ENODATA:
            raise


def remove_sidecar(path: str) -> None:
    _unlink(sidecar_path(path))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
