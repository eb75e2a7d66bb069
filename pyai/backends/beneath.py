"""Opening directories below a held directory descriptor without following a symlink.

PATCH takes a path from a client, inside trees that uploaders may write.
Resolving it once (realpath), checking the answer and then using the path
again loses a race against anyone who swaps a component for a symlink in
between.  Here every component is resolved relative to a descriptor the
service holds, with symlinks refused: openat2(2) with RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS where the kernel has it (Linux 5.6; the system call is
``pyai.native.openat2``), else a walk of one O_NOFOLLOW open per component.
A refused symlink is ELOOP, whichever way.

A publish between held directory descriptors, naming no path an uploader
could redirect, is ``pyai.native.rename_noreplace`` with ``src_dir_fd`` and
``dst_dir_fd``.
"""

import errno
import os
import stat
from typing import Sequence

from pyai import native

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
# EAGAIN: the kernel saw a rename race during a RESOLVE_BENEATH walk and asks to retry.
_RETRIES = 8
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Set once openat2 answered ENOSYS (an old kernel, or a seccomp filter that hides it).
_no_openat2 = False


def _openat2(dir_fd: int, relative: str, flags: int) -> int:
    resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
    for _ in range(_RETRIES - 1):
        try:
            return native.openat2(dir_fd, relative, flags, resolve)
        except BlockingIOError:
            continue
    return native.openat2(dir_fd, relative, flags, resolve)


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


def open_below(root: str, relative: str, flags: int) -> int:
    """A descriptor of ``relative`` (names joined by ``/``, no ``..``) below the directory ``root``,
    opened with ``flags`` without following a symlink anywhere, the last component included.

    ELOOP when a component is a symlink, ENOENT / ENOTDIR as open(2) says them.
    ``root`` itself is the configured prefix and is trusted.
    """
    global _no_openat2
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("components must be plain names")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not _no_openat2:
            try:
                return _openat2(root_fd, relative, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENOSYS:
                    raise
                _no_openat2 = True
        dir_fd = _walk(root_fd, parts[:-1]) if len(parts) > 1 else os.dup(root_fd)
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)
