"""Where a posix file's checksum is kept: an xattr, else a sidecar file.

The xattr ``user.pyai.checksum`` (text ``sha256:<hex>``) is set on the
temporary file before it is published, so it is atomic with the file, moves
with it on rename and vanishes with it on unlink: one syscall per PUT and per
HEAD/GET.  Where the file system refuses user xattrs the checksum goes to the
sidecar ``<dir>/.pyai-sum-<name>`` (no id can name a file starting with
``.``), which also records the inode and size of the file it describes: a
sidecar left over from a replaced or moved file is ignored, never believed.
"""

import errno
import hashlib
import os
from typing import Optional

from pyai.archive import checksums as digests
from pyai.backends import tempfiles
from pyai.backends.base import Checksum

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


def sidecar_text(checksum: Checksum, st: os.stat_result) -> str:
    return f"{digests.encode(*checksum)} {st.st_ino} {st.st_size}\n"


def parse_sidecar(text: str, st: os.stat_result) -> Optional[Checksum]:
    """The checksum a sidecar holds, if it describes the file ``st`` (else None)."""
    fields = text.split()
    if len(fields) != 3 or fields[1:] != [str(st.st_ino), str(st.st_size)]:
        return None
    return digests.decode(fields[0])


def set_on_temp(fd: int, checksum: Checksum) -> bool:
    """Attach the checksum to the unpublished file; False when xattrs are unsupported
    (the caller then writes a sidecar once the file is published)."""
    try:
        os.setxattr(fd, XATTR, digests.encode(*checksum).encode("ascii"))
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return False
        raise
    return True


def write_sidecar(path: str, fd: int, checksum: Checksum) -> None:
    """Write the sidecar of the just-published ``path`` (open as ``fd``): a temporary
    file, locked before it has a sweepable name (see tempfiles), renamed over any old sidecar."""
    side, temp = tempfiles.create_locked(os.path.dirname(path), 0o444)
    try:
        os.write(side, sidecar_text(checksum, os.fstat(fd)).encode("ascii"))
        os.fsync(side)
        os.replace(temp, sidecar_path(path))
    except BaseException:
        _unlink(temp)
        raise
    finally:
        os.close(side)


def read(path: str, fd: Optional[int] = None) -> Optional[Checksum]:
    """The stored ``(algorithm, digest)`` of the file, or None when it has none."""
    try:
        value = os.getxattr(path if fd is None else fd, XATTR)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return _read_sidecar(path, fd)
        if exc.errno == errno.ENODATA:
            return None
        raise
    return digests.decode(value.decode("ascii", "replace"))


def _read_sidecar(path: str, fd: Optional[int]) -> Optional[Checksum]:
    try:
        with open(sidecar_path(path), encoding="ascii", errors="replace") as handle:
            text = handle.read(512)
        st = os.stat(path) if fd is None else os.fstat(fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return parse_sidecar(text, st)


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
