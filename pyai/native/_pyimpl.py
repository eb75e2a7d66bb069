"""The I/O primitives of pyai in pure Python: the twin of the C ``pyai.native._cimpl``.

Same names, signatures, behaviour and exceptions (all through
``pyai.errors.os_error``); used when the extension is not built or
``PYAI_IMPL=python``.  Import them from ``pyai.native``.  Differences: it
reads with poll+readv (no splice), publishes with link+unlink (no renameat2)
and ``preallocate`` reserves nothing (nor does ``recv_to_file``'s ``reserve``).
"""

import contextlib
import ctypes
import ctypes.util
import errno
import math
import operator
import os
import select
import time

from pyai.errors import os_error

FADV_NORMAL = os.POSIX_FADV_NORMAL
FADV_SEQUENTIAL = os.POSIX_FADV_SEQUENTIAL
FADV_RANDOM = os.POSIX_FADV_RANDOM
FADV_WILLNEED = os.POSIX_FADV_WILLNEED
FADV_DONTNEED = os.POSIX_FADV_DONTNEED
FADV_NOREUSE = os.POSIX_FADV_NOREUSE

CHUNK = 1 << 20
# How long a receive sleeps when poll() calls the socket readable but readv
# finds nothing: costs nothing, delays a coming byte little (as NAP_MS in C).
NAP = 0.01
_MAX_IO = 0x7FFFF000  # Linux moves at most this much per call
_INT_MAX = 2**31 - 1
# errno values that mean "this copy method does not work for these files"
_UNSUPPORTED = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


@contextlib.contextmanager
def _raising(op, path=None):
    """Re-raise the OSError of an ``os`` call as ``os_error`` does, like the C twin."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or getattr(exc, "op", None) is not None:
            raise
        raise os_error(exc.errno, op, path) from None


def _count(nbytes):
    nbytes = operator.index(nbytes)
    if nbytes < 0:
        raise ValueError("nbytes must be >= 0")
    return nbytes


def _timeout_ms(timeout):
    """poll() milliseconds: rounded up (a short timeout must not become 0), -1 = forever."""
    if timeout is None or timeout <= 0:
        return -1
    ms = timeout * 1000.0
    if ms != ms:
        raise ValueError("timeout is NaN")
    return math.ceil(ms) if ms < _INT_MAX else _INT_MAX


def _limit_ms(seconds):
    """poll() milliseconds of a patience or budget: rounded up, None = no limit (-1), 0 = do not wait."""
    if seconds is None:
        return -1
    ms = seconds * 1000.0
    if ms != ms:
        raise ValueError("limit is NaN")
    return 0 if ms <= 0 else (math.ceil(ms) if ms < _INT_MAX else _INT_MAX)


class _Clock:
    """The limits of one receive (as pyai_recv_limits in C), in monotonic seconds."""

    def __init__(self, timeout, patience, budget, waited):
        self.timeout = _timeout_ms(timeout) / 1000
        self.patience = _limit_ms(patience) / 1000
        self.budget = _limit_ms(budget) / 1000
        self.start = time.monotonic()
        self.last = self.start - max(0, _limit_ms(waited) if waited else 0) / 1000
        self.done = 0  # bytes moved so far

    def next_limit(self):
        """(seconds to wait at most or None, errno when that wait ends empty): the earliest limit."""
        now, until, why = time.monotonic(), None, None
        if self.timeout >= 0:
            until, why = self.last + self.timeout, errno.ETIMEDOUT
        if self.patience >= 0:
            end = max(self.last, self.start) + self.patience
            if until is None or end < until:
                until, why = end, errno.EAGAIN
        if self.budget >= 0 and (until is None or self.start + self.budget < until):
            until, why = self.start + self.budget, errno.EAGAIN
        return (None if until is None else max(0.0, until - now)), why

    def over_budget(self):
        return self.budget >= 0 and self.last - self.start >= self.budget


def recv_to_file(
    sock_fd, file_fd, nbytes, timeout, hashers=(), patience=None, *, budget=None, waited=0.0, reserve=0, writeback=0
):
    """Move up to ``nbytes`` from a stream socket to a file; fewer only if the peer closed.

    ``timeout`` is the progress deadline (seconds; None or <= 0: none): once
    no byte has moved for that long, counting the ``waited`` seconds that
    passed since the last byte before this call, it raises TimeoutError.
    ``patience`` (seconds): once no byte has moved for that long within this
    call, it raises BlockingIOError (EAGAIN); so does ``budget`` (seconds)
    once the call has lasted that long, to give the caller back control.
    Every exception of the receive carries ``characters_written`` (the bytes
    moved, hashed and written by this call before it stopped) and ``idle``
    (seconds since the last byte, ``waited`` included).  Every byte written
    is also given to ``update`` of each of ``hashers`` (hashlib objects).
    ``reserve`` is accepted and ignored (no fallocate here).  ``writeback``
    > 0 writes the file back behind the receive in steps of that many bytes
    (see ``write_behind``; a file that cannot be is simply received).  A TCP
    urgent byte is dropped, as readv() does with SO_OOBINLINE off.
    """
    clock = _Clock(timeout, patience, budget, waited)
    nbytes = _count(nbytes)
    operator.index(reserve)
    done = 0
    try:
        if nbytes:
            start = _offset(file_fd) if writeback > 0 else -1
            done = _receive(sock_fd, file_fd, nbytes, clock, hashers, start, writeback)
    except OSError as exc:
        if exc.errno is None:
            raise
        if getattr(exc, "op", None) is None:
            exc = os_error(exc.errno, "receive")
        exc.characters_written = clock.done
        exc.idle = time.monotonic() - clock.last
        raise exc from None
    return done


def _offset(fd):
    """The file offset of ``fd``, -1 for a pipe or socket (nothing to write back)."""
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        if exc.errno != errno.ESPIPE:
            raise
        return -1


def _receive(sock_fd, file_fd, nbytes, clock, hashers, start, writeback):
    buf = memoryview(bytearray(min(nbytes, CHUNK)))
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    while clock.done < nbytes:
        # Waiting first makes a blocking socket safe too: once poll says
        # readable, readv returns at once (data, EOF or the error).
        wait, why = clock.next_limit()
        if not poller.poll(-1 if wait is None else math.ceil(wait * 1000)):
            raise os_error(why, "receive")
        try:
            got = os.readv(sock_fd, [buf[: min(CHUNK, nbytes - clock.done)]])
        except BlockingIOError:
            # readable, yet nothing to read: nap instead of spinning (the limits still end it)
            wait, why = clock.next_limit()
            if wait is not None and wait <= 0:
                raise os_error(why, "receive") from None
            time.sleep(NAP if wait is None else min(NAP, wait))
            continue
        if got == 0:
            break  # the peer closed: the body is short
        piece = buf[:got]
        for hasher in hashers:
            hasher.update(piece)
        _write_all(file_fd, piece)
        clock.done += got
        clock.last = time.monotonic()
        if start >= 0 and not write_behind(file_fd, start + clock.done - got, start + clock.done, writeback):
            start = -1  # this file cannot be written back: just receive it
        if clock.done < nbytes and clock.over_budget():
            raise os_error(errno.EAGAIN, "receive")
    return clock.done


def _write_all(fd, view):
    while view:
        n = os.write(fd, view)
        if n == 0:
            raise os_error(errno.EIO, "write")  # no progress, no error: do not spin
        view = view[n:]


def write_all(fd, data):
    """Write every byte of the bytes-like ``data`` to ``fd``."""
    with memoryview(data) as view, view.cast("B") as flat, _raising("write"):
        _write_all(fd, flat)


def copy_fd(src_fd, dst_fd, nbytes):
    """Copy ``nbytes`` between the current offsets in the kernel; fewer only at source EOF."""
    nbytes = _count(nbytes)
    methods = [_copy_read_write]
    if hasattr(os, "sendfile"):
        methods.insert(0, lambda s, d, n: os.sendfile(d, s, None, n))
    if hasattr(os, "copy_file_range"):
        methods.insert(0, os.copy_file_range)
    done = 0
    with _raising("copy"):
        while done < nbytes:
            want = min(nbytes - done, _MAX_IO)
            try:
                n = methods[0](src_fd, dst_fd, want)
            except OSError as exc:
                if len(methods) > 1 and exc.errno in _UNSUPPORTED:
                    del methods[0]  # offsets are unchanged by a failed call
                    continue
                raise
            if n == 0:
                # Pseudo files report size 0 to the in-kernel copies; a first 0
                # is confirmed by the next method.
                if len(methods) > 1 and done == 0:
                    del methods[0]
                    continue
                break
            done += n
    return done


def _copy_read_write(src_fd, dst_fd, want):
    data = os.read(src_fd, min(want, CHUNK))
    _write_all(dst_fd, memoryview(data))
    return len(data)


def rename_noreplace(src, dst):
    """Publish ``src`` as ``dst``; FileExistsError (naming dst) if dst exists.

    link() refuses an existing dst atomically; then the old name goes.  Not
    following symlinks, so it moves what rename() would move.
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        raise os_error(exc.errno, "publish", dst if exc.errno == errno.EEXIST else src) from None
    try:
        os.unlink(src)
    except OSError as exc:
        # Undo, so a failure leaves things as they were (dst is the link we made).
        with contextlib.suppress(OSError):
            os.unlink(dst)
        raise os_error(exc.errno, "publish", src) from None


def fsync(fd):
    """Flush ``fd``'s data and metadata to stable storage."""
    with _raising("fsync"):
        os.fsync(fd)


def _libc_sync_file_range():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_sync_file_range = _libc_sync_file_range()
# linux/fs.h
_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
_WRITE_BEHIND_UNSUPPORTED = frozenset({errno.ESPIPE, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _sync_range(fd, offset, nbytes, flags):
    if _sync_file_range is None:
        raise OSError(errno.ENOSYS, "no sync_file_range")
    while _sync_file_range(fd, offset, nbytes, flags) < 0:
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def write_behind(fd, start, end, step):
    """Write back behind a writer that has just written the file offsets ``[start, end)``.

    For every whole ``step`` of the file (aligned to offsets, so calls need no
    state between them) that this write completed, start its writeback
    (sync_file_range WRITE, no wait) and wait for the writeback of the step
    before it: about two steps of the file stay dirty at most, and a final
    fsync has little left to do.  It makes nothing durable (no device cache
    flush, no metadata): fsync does.  Returns True, or False when this file
    cannot be written back so (a pipe, a system without sync_file_range);
    raises the error (EIO) when its data cannot be written.
    """
    if step <= 0 or start < 0 or end < start:
        raise ValueError("need step > 0 and 0 <= start <= end")
    first, last = start // step, end // step
    if last <= first:
        return True
    try:
        _sync_range(fd, first * step, (last - first) * step, _SYNC_FILE_RANGE_WRITE)
        if last >= 2:  # the steps before: their writeback was started by an earlier call
            wait_from = max(first - 1, 0) * step
            _sync_range(
                fd,
                wait_from,
                (last - 1) * step - wait_from,
                _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER,
            )
    except OSError as exc:
        if exc.errno in _WRITE_BEHIND_UNSUPPORTED:
            return False
        raise os_error(exc.errno, "writeback") from None
    return True


def fsync_dir(path):
    """fsync the directory ``path`` so entries added or removed in it survive a crash."""
    with _raising("fsync", path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fadvise(fd, offset, length, advice):
    """posix_fadvise (``length`` 0 means to the end of the file)."""
    with _raising("fadvise"):
        os.posix_fadvise(fd, offset, length, advice)


def preallocate(fd, nbytes, offset=0):
    """Reserve nothing and return False: Python has no fallocate(FALLOC_FL_KEEP_SIZE).

    (os.posix_fallocate may emulate by writing zeros and changes the size.)
    """
    _count(nbytes)
    _count(offset)
    return False


def write_back(fd):
    """Write back every dirty page of ``fd`` and wait until the device has them.

    sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER) over the whole file: the
    blocks are allocated and written, but no device cache is flushed and no
    metadata committed, so alone it makes nothing durable (see
    pyai.backends.flusher for when a later directory fsync does).  Raises the
    error (EIO) when the data cannot be written.
    """
    try:
        _sync_range(fd, 0, 0, _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER)
    except OSError as exc:
        raise os_error(exc.errno, "writeback") from None


def _libc_syncfs():
    try:
        call = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call


_syncfs = _libc_syncfs()


def syncfs(fd):
    """syncfs(2): write back every dirty page and inode of the file system holding ``fd``
    and have it make them durable; raises a writeback error anywhere on that file
    system since this open file last asked (ENOSYS where there is no syncfs)."""
    if _syncfs is None:
        raise os_error(errno.ENOSYS, "syncfs")
    while _syncfs(fd) < 0:
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise os_error(err, "syncfs")
