"""Temporary files of uploads, and the sweep's test of whether one is dead.

A temporary file is only ever visible under its sweepable name
``.pyai-tmp-<token>`` while its owner holds an flock on it: it is created as
``.pyai-tmp-new-<token>``, locked, then renamed.  The sweep leaves ``new-``
names alone until they are far older than any owner takes between creating and
locking one (NEW_MIN_AGE), and an owner whose ``new-`` name was swept anyway
sees its rename fail and starts again with a fresh name; so no sweep can take
the file of a live upload.  (O_TMPFILE, no name at all while written, would do
too, but not on NFS or SAM-QFS; one way for every file system keeps the path
the tests exercise the path that runs in production, and crash leftovers stay
visible for the sweep.)

The sweep removes a file only when it is older than ``min_age`` (by the mtime
of the open file, not of whatever the name means later), it got the lock (no
live owner), and the name still is the file it locked.
"""

import errno
import fcntl
import itertools
import logging
import os
import secrets
import stat
import time
from typing import Optional, Tuple

from pyai.backends.base import TEMP_PREFIX

NEW_PREFIX = TEMP_PREFIX + "new-"  # never a token: tokens start with hex digits
# A live owner renames its new- name microseconds after creating it.
NEW_MIN_AGE = 3600.0
# Attempts at creating a temporary file when sweeps keep taking the new- names.
CREATE_ATTEMPTS = 3
# errno values of a name that went away under us (NFS says ESTALE)
GONE = frozenset({errno.ENOENT, errno.ESTALE, errno.ENOTDIR})

# Tokens unique per host (random part), process (pid) and upload (counter)
# without asking the kernel for randomness on every PUT.
_HOST_TOKEN = secrets.token_hex(4)
_counter = itertools.count()
log = logging.getLogger("pyai")


def _token() -> str:
    return f"{_HOST_TOKEN}-{os.getpid()}-{next(_counter)}"


def unique_name() -> str:
    """A temporary name no other upload uses; whoever gives a file this name must hold its flock first."""
    return TEMP_PREFIX + _token()


def create_locked(directory: str, mode: int = 0o600, dir_fd: Optional[int] = None) -> Tuple[int, str]:
    """A new empty file in ``directory``, flocked by us: ``(fd, path)``.

    With ``dir_fd`` (a descriptor of the directory, opened without following
    symlinks) every name is taken in it and ``path`` is the bare file name.
    FileNotFoundError when ``directory`` does not exist.
    """
    at = {} if dir_fd is None else {"dir_fd": dir_fd}
    both = {} if dir_fd is None else {"src_dir_fd": dir_fd, "dst_dir_fd": dir_fd}
    for _ in range(CREATE_ATTEMPTS):
        token = _token()
        new = NEW_PREFIX + token if dir_fd is not None else os.path.join(directory, NEW_PREFIX + token)
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode, **at)
        path = TEMP_PREFIX + token if dir_fd is not None else os.path.join(directory, TEMP_PREFIX + token)
        try:
            # The lock tells a sweep (perhaps of another instance) that this file
            # is alive; the kernel drops it when the process dies.
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(new, path, **both)
        except OSError as exc:
            os.close(fd)
            if exc.errno in GONE and (dir_fd is not None or os.path.isdir(directory)):
                continue  # a sweep took the new- name before our lock: never written to, start again
            _unlink(new, dir_fd)
            raise
        except BaseException:
            os.close(fd)
            _unlink(new, dir_fd)
            raise
        return fd, path
    raise FileNotFoundError(errno.ENOENT, "temporary files keep vanishing (a sweep with no age limit?)")


def remove_if_dead(path: str, min_age: float, now: Optional[float] = None) -> bool:
    """Remove the temporary file ``path`` when it is older than ``min_age`` seconds
    and no live upload holds it; True when removed.  Never raises for a file
    that vanished meanwhile."""
    if os.path.basename(path).startswith(NEW_PREFIX):
        min_age = max(min_age, NEW_MIN_AGE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # gone, a symbolic link, not ours to read: not a temporary file to remove
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        # mtime: every write refreshes it (ctime would not do: utime sets it to now)
        if (time.time() if now is None else now) - st.st_mtime < min_age:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # an upload in progress holds it
        # The name may mean another file by now (removed and made again): only
        # the file we locked is ours to remove.
        try:
            named = os.lstat(path)
        except OSError:
            return False
        if (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
            return False
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno not in GONE:  # read-only, permissions: say so, sweep the rest
                log.warning("could not remove a stale temporary file: %s", exc.strerror)
            return False
        return True
    finally:
        os.close(fd)


def _unlink(path: str, dir_fd: Optional[int] = None) -> None:
    try:
        os.unlink(path, dir_fd=dir_fd)
    except OSError:
        pass
