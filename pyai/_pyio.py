"""The I/O primitives of pyai in pure Python: the twin of the C ``pyai._io``.

Same names, signatures, behaviour and exceptions (all through
``pyai.errors.os_error``); used when the extension is not built or
``PYAI_IMPL=python``.  Import them from ``pyai.fileio``.  Differences: it
reads with poll+readv (no splice), publishes with link+unlink (no renameat2)
and ``preallocate`` reserves nothing.
"""

import contextlib
import errno
import math
import operator
import os
import select

from .errors import os_error

FADV_NORMAL = os.POSIX_FADV_NORMAL
FADV_SEQUENTIAL = os.POSIX_FADV_SEQUENTIAL
FADV_RANDOM = os.POSIX_FADV_RANDOM
FADV_WILLNEED = os.POSIX_FADV_WILLNEED
FADV_DONTNEED = os.POSIX_FADV_DONTNEED
FADV_NOREUSE = os.POSIX_FADV_NOREUSE

CHUNK = 1 << 20
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


def recv_to_file(sock_fd, file_fd, nbytes, timeout, hashers=()):
    """Move up to ``nbytes`` from a stream socket to a file; fewer only if the peer closed.

    ``timeout`` bounds the wait for each next byte (seconds; None or <= 0:
    forever) and raises TimeoutError when it runs out.  Every byte written is
    also given to ``update`` of each of ``hashers`` (hashlib objects).
    """
    ms = _timeout_ms(timeout)
    nbytes = _count(nbytes)
    if nbytes == 0:
        return 0
    buf = memoryview(bytearray(min(nbytes, CHUNK)))
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    done = 0
    with _raising("receive"):
        while done < nbytes:
            # Waiting first makes a blocking socket safe too: once poll says
            # readable, readv returns at once (data, EOF or the error).
            if not poller.poll(ms):
                raise os_error(errno.ETIMEDOUT, "receive")
            got = os.readv(sock_fd, [buf[: min(CHUNK, nbytes - done)]])
            if got == 0:
                break  # the peer closed: the body is short
            piece = buf[:got]
            for hasher in hashers:
                hasher.update(piece)
            _write_all(file_fd, piece)
            done += got
    return done


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


def preallocate(fd, nbytes):
    """Reserve nothing and return False: Python has no fallocate(FALLOC_FL_KEEP_SIZE).

    (os.posix_fallocate may emulate by writing zeros and changes the size.)
    """
    _count(nbytes)
    return False
