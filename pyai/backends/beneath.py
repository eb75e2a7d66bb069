"""Opening directories below a held directory descriptor without following a symlink.

PATCH takes a path from a client, inside trees that uploaders may write.
Resolving it once (realpath), checking the answer and then using the path
again loses a race against anyone who swaps a component for a symlink in
between.  Here every component is resolved relative to a descriptor the
service holds, with symlinks refused: openat2(2) with RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS where the kernel has it (Linux 5.6), else a walk of one
O_NOFOLLOW open per component.  A refused symlink is ELOOP, whichever way.

``rename_noreplace`` is renameat2(RENAME_NOREPLACE) between held directory
descriptors, so a publish names no path an uploader could redirect.
"""

import ctypes
import errno
import os
import stat
from typing import Sequence

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RENAME_NOREPLACE = 1
SYS_OPENAT2 = 437  # the same number on every Linux architecture (the unified syscall table)
# EAGAIN: the kernel saw a rename race during a RESOLVE_BENEATH walk and asks to retry.
_RETRIES = 8
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28 and later
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int
# Set once openat2 answered ENOSYS (an old kernel, or a seccomp filter that hides it).
_no_openat2 = False


def _openat2(dir_fd: int, relative: str, flags: int) -> int:
    how = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
    for _ in range(_RETRIES):
        fd = _libc.syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(os.fsencode(relative)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(err, os.strerror(err), relative)


def _walk(dir_fd: int, parts: Sequence[str]) -> int:
    """One O_NOFOLLOW open per component (kernels without openat2)."""
    current = dir_fd
    try:
        for part in parts:
            try:
                following = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(current, part):
                    raise OSError(errno.ELOOP, "a component is a symlink", part) from None
                raise
            if current != dir_fd:
                os.close(current)
            current = following
        return os.open(".", _DIR_FLAGS, dir_fd=current)
    finally:
        if current != dir_fd:
            os.close(current)


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_dir(dir_fd: int, parts: Sequence[str]) -> int:
    """A descriptor (O_RDONLY) of the directory ``parts`` (names, no ``..``) below ``dir_fd``.

    ELOOP when a component is a symlink, ENOTDIR when one is not a directory,
    ENOENT when one is missing.
    """
    global _no_openat2
    if any(part in ("", ".", "..") or "/" in part for part in parts):
        raise ValueError("components must be plain names")
    if not _no_openat2:
        try:
            return _openat2(dir_fd, "/".join(parts) or ".", _DIR_FLAGS)
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _no_openat2 = True
    return _walk(dir_fd, parts)


def rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> None:
    """Rename ``src`` (in ``src_dir_fd``) to ``dst`` (in ``dst_dir_fd``); FileExistsError when dst exists.

    Without renameat2 (old glibc): a hard link refuses an existing name
    atomically, then the old name goes; neither follows a symlink.
    """
    if _renameat2 is not None:
        if _renameat2(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: a file system without RENAME_NOREPLACE
            raise OSError(err, os.strerror(err), dst if err == errno.EEXIST else src)
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    try:
        os.unlink(src, dir_fd=src_dir_fd)
    except OSError:
        os.unlink(dst, dir_fd=dst_dir_fd)  # undo: as it was
        raise
