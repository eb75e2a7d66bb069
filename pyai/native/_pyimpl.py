"""The I/O primitives of pyai in pure Python: the twin of the C ``pyai.native._cimpl``.

Same names, signatures, behaviour and exceptions (all through
``pyai.errors.os_error``); used when the extension is not built or
``PYAI_IMPL=python``.  Import them from ``pyai.native``.  Differences: it
reads with poll+readv (no splice) and ``preallocate`` reserves nothing (nor
does ``recv_to_file``'s ``reserve``).  The system calls Python's ``os`` lacks
(sync_file_range, syncfs, renameat2, openat2) are called through ctypes.
"""

import contextlib
import ctypes
import ctypes.util
import errno
import json
import math
import operator
import os
import re
import select
import socket
import time
from typing import Any, Optional, Tuple

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
    """The limits of one receive (as pyai_recv_limits in C), in monotonic seconds: the one
    place they are set (recv_to_file, recv_chunked_to_file)."""

    def __init__(self, timeout, patience, budget, waited, reserve):
        self.timeout = _timeout_ms(timeout) / 1000
        self.patience = _limit_ms(patience) / 1000
        self.budget = _limit_ms(budget) / 1000
        self.start = time.monotonic()
        self.last = self.start - max(0, _limit_ms(waited) if waited else 0) / 1000
        operator.index(reserve)  # accepted (an int) and ignored: no fallocate here
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

    @contextlib.contextmanager
    def failing(self):
        """Raise an OSError of the receive as ``os_error`` does, with ``characters_written`` and ``idle``."""
        try:
            yield
        except OSError as exc:
            if exc.errno is None:
                raise
            # typed Any: the receive's OSError carries how far it got (characters_written, idle)
            failure: Any = exc if getattr(exc, "op", None) is not None else os_error(exc.errno, "receive")
            failure.characters_written = self.done
            failure.idle = time.monotonic() - self.last
            raise failure from None

    def recv(self, sock_fd, poller, view):
        """Read what comes on the socket into ``view`` (the receive step, as pyai_rx_recv in C):
        the bytes read, 0 when the peer closed; OSError when a limit ends the wait."""
        while True:
            # Waiting first makes a blocking socket safe too: once poll says
            # readable, readv returns at once (data, EOF or the error).
            wait, why = self.next_limit()
            if not poller.poll(-1 if wait is None else math.ceil(wait * 1000)):
                raise os_error(why, "receive")
            try:
                return os.readv(sock_fd, [view])
            except BlockingIOError:
                # readable, yet nothing to read (TCP urgent data): nap instead of spinning
                wait, why = self.next_limit()
                if wait is not None and wait <= 0:
                    raise os_error(why, "receive") from None
                time.sleep(NAP if wait is None else min(NAP, wait))


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
    clock = _Clock(timeout, patience, budget, waited, reserve)
    nbytes = _count(nbytes)
    done = 0
    with clock.failing():
        if nbytes:
            start = _offset(file_fd) if writeback > 0 else -1
            done = _receive(sock_fd, file_fd, nbytes, clock, hashers, start, writeback)
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
        got = clock.recv(sock_fd, poller, buf[: min(CHUNK, nbytes - clock.done)])
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


def _libc_call(name, argtypes, restype=ctypes.c_int):
    """The libc function ``name`` (errno kept for ctypes.get_errno), or None where there is none."""
    try:
        call = getattr(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True), name)
    except (OSError, AttributeError):  # not Linux, or a libc without it
        return None
    call.argtypes = argtypes
    call.restype = restype
    return call


_renameat2 = _libc_call("renameat2", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint])
_RENAME_NOREPLACE = 1  # linux/fs.h
_AT_FDCWD = -100  # fcntl.h


def rename_noreplace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
    """Publish ``src`` as ``dst``; FileExistsError (naming dst) if dst exists.

    As os.rename: ``src_dir_fd``/``dst_dir_fd`` make the names relative to
    those directories.  renameat2(RENAME_NOREPLACE) where the C library has
    it; where it has not, or the kernel or file system lacks RENAME_NOREPLACE,
    link() refuses an existing dst atomically, then the old name goes.
    Neither follows a symlink, so it moves what rename() would move.
    """
    bsrc, bdst = os.fsencode(src), os.fsencode(dst)
    if b"\0" in bsrc or b"\0" in bdst:
        raise ValueError("embedded null byte")
    if _renameat2 is not None:
        src_fd = _AT_FDCWD if src_dir_fd is None else operator.index(src_dir_fd)
        dst_fd = _AT_FDCWD if dst_dir_fd is None else operator.index(dst_dir_fd)
        if _renameat2(src_fd, bsrc, dst_fd, bdst, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: a file system without RENAME_NOREPLACE
            raise os_error(err, "publish", dst if err == errno.EEXIST else src)
    try:
        os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO, "publish", dst if exc.errno == errno.EEXIST else src) from None
    try:
        os.unlink(src, dir_fd=src_dir_fd)
    except OSError as exc:
        # Undo, so a failure leaves things as they were (dst is the link we made).
        with contextlib.suppress(OSError):
            os.unlink(dst, dir_fd=dst_dir_fd)
        raise os_error(exc.errno or errno.EIO, "publish", src) from None


_syscall = _libc_call("syscall", None, ctypes.c_long)
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (the unified syscall table)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dir_fd, path, flags, resolve):
    """openat2(2): open ``path`` relative to ``dir_fd`` with ``flags`` and the RESOLVE_* flags
    ``resolve``; the new descriptor.  OSError (``os_error``, naming path) on failure: ENOSYS
    where the kernel (or a seccomp filter) has no openat2, EAGAIN when the kernel saw a rename
    race during a RESOLVE_BENEATH walk (the caller decides whether to try again).
    """
    bpath = os.fsencode(path)
    if b"\0" in bpath:
        raise ValueError("embedded null byte")
    if _syscall is None:
        raise os_error(errno.ENOSYS, "open", path)
    how = _OpenHow(flags & 0xFFFFFFFF, 0, resolve)
    while True:
        fd = _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(bpath),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise os_error(err, "open", path)


def fsync(fd):
    """Flush ``fd``'s data and metadata to stable storage."""
    with _raising("fsync"):
        os.fsync(fd)


_sync_file_range = _libc_call("sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint])
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
        raise os_error(exc.errno or errno.EIO, "writeback") from None
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
        raise os_error(exc.errno or errno.EIO, "writeback") from None


_syncfs = _libc_call("syncfs", [ctypes.c_int])


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


# ---- chunked bodies ---------------------------------------------------------------

# gunicorn's bounds (gunicorn/http/body.py), as PYAI_CHUNKED_MAX_* in csrc/pyai_chunked.h
CHUNKED_MAX_LINE = 8190
CHUNKED_MAX_TRAILER = 8190 * 32
# A line may run this far past its limit within one piece received before it is refused anyway.
_LINE_SLACK = 64 << 10
# A data run this small is joined to the run before it (MERGE_MAX in C): a piece of 1-byte
# chunks is hashed with one update and written as one run, not one per chunk.
_MERGE_MAX = 4096
# RFC 9112 7.1.1 chunk extensions, exactly gunicorn's CHUNK_EXT_RE
_CHUNK_EXT = re.compile(
    rb"(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb'|"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))?)*'
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_INT64_MAX = 2**63 - 1


class ChunkedDecoder:
    """The state of one ``Transfer-Encoding: chunked`` body across calls of ``recv_chunked_to_file``.

    ``feed(data)`` gives bytes somebody else already read from the socket
    (the server's read-ahead): they are decoded first.  ``phase`` is where
    the decoder is: "size" (in a chunk-size line), "data", "crlf" (after a
    chunk's data), "trailer", "done" (``complete``), "failed" (a framing
    error or max_size: every later call raises it again).  ``decoded`` is
    the data bytes decoded so far.  Once complete, ``leftover`` is what was
    read past the end of the body (the next request: give it back) and
    ``trailers`` the trailer section, uninterpreted (its fields with CRLF
    between them).  ``max_line`` and ``max_trailer`` bound a chunk-size line
    and the trailer section (gunicorn's defaults).
    """

    def __init__(self, *, max_line=CHUNKED_MAX_LINE, max_trailer=CHUNKED_MAX_TRAILER):
        if max_line <= 0 or max_trailer <= 0:
            raise ValueError("max_line and max_trailer must be > 0")
        self.max_line, self.max_trailer = max_line, max_trailer
        self.phase = "size"
        self.decoded = 0
        self.trailers = b""
        self._error = None
        self._pending = bytearray()  # received or fed, not decoded yet; once done, the leftover
        self._line = bytearray()  # the chunk-size line (or the trailer section) so far
        self._left = 0  # data bytes left in the current chunk
        self._crlf = b""  # the bytes seen of the CRLF after the data

    def feed(self, data):
        """Bytes already read from the socket, decoded before it is read."""
        self._pending += data

    @property
    def complete(self):
        return self.phase == "done"

    @property
    def leftover(self):
        return bytes(self._pending) if self.phase == "done" else b""

    def _fail(self, err):
        self.phase, self._error = "failed", err
        return os_error(err, "receive")

    def _decode(self, data, runs, max_size):
        """Decode ``data`` (a memoryview), appending the data runs to ``runs``; the rest after the end is kept."""
        i, n = 0, len(data)
        while i < n and self.phase != "done":
            if self.phase == "size":
                i = self._take_line(data, i, self.max_line + _LINE_SLACK + 2)
            elif self.phase == "data":
                take = min(self._left, n - i)
                if max_size > 0 and take > max_size - self.decoded:
                    raise self._fail(errno.EFBIG)
                runs.append(data[i : i + take])
                self.decoded += take
                self._left -= take
                i += take
                if not self._left:
                    self.phase, self._crlf = "crlf", b""
            elif self.phase == "crlf":
                self._crlf += bytes(data[i : i + 1])
                i += 1
                if len(self._crlf) == 2:
                    if self._crlf != b"\r\n":
                        raise self._fail(errno.EPROTO)
                    self.phase = "size"
            elif self.phase == "trailer":
                i = self._take_line(data, i, self.max_trailer + _LINE_SLACK + 4)
        if self.phase == "done":
            self._pending = bytearray(data[i:])
            return
        self._pending = bytearray()
        # All received so far is decoded and the line goes on: gunicorn's bounds.
        if self.phase == "size" and len(self._line) > self.max_line:
            raise self._fail(errno.EPROTO)
        if self.phase == "trailer":
            line = self._line
            if len(line) > self.max_trailer or line.count(b"\n") != line.count(b"\r\n"):
                raise self._fail(errno.EPROTO)

    def _take_line(self, data, i, hard):
        """Take bytes of data[i:] into the current line (chunk-size line or trailer section)
        up to its end, never past ``hard`` bytes; the index after what was taken."""
        line, n = self._line, len(data)
        while i < n:
            stop = min(n, i + hard + 1 - len(line))  # one past the bound: refused below
            j = data[i:stop].tobytes().find(b"\n")
            end = stop if j < 0 else i + j + 1
            line += data[i:end]
            i = end
            if len(line) > hard:
                raise self._fail(errno.EPROTO)
            if j < 0:
                continue
            if self.phase == "size":  # a line ends at the first CRLF: a bare LF is kept, and fails the hex check
                if len(line) >= 2 and line[-2] == 0x0D:
                    self._size_line(bytes(line[:-2]))
                    return i
            elif len(line) == 2 and line[0] == 0x0D:  # an empty trailer section: CRLF
                self.trailers, self.phase = b"", "done"
                return i
            elif line.endswith(b"\r\n\r\n"):
                self.trailers, self.phase = bytes(line[:-4]), "done"
                return i
        return i

    def _size_line(self, line):
        size, semi, ext = line.partition(b";")
        if semi:
            if b"\r" in ext:
                raise self._fail(errno.EPROTO)  # a bare CR in the extensions
            size = size.rstrip(b" \t")  # BWS before the extensions, and only then
        if not size or any(c not in _HEX for c in size):
            raise self._fail(errno.EPROTO)
        value = int(size, 16)
        if value > _INT64_MAX or (semi and not _CHUNK_EXT.fullmatch(b";" + ext)):
            raise self._fail(errno.EPROTO)
        self._line = bytearray()
        if value:
            self.phase, self._left = "data", value
        else:
            self.phase = "trailer"


def recv_chunked_to_file(
    sock_fd,
    file_fd,
    decoder,
    timeout,
    hashers=(),
    patience=None,
    *,
    budget=None,
    waited=0.0,
    reserve=0,
    writeback=0,
    max_size=0,
):
    """Decode a ``Transfer-Encoding: chunked`` body from a stream socket into a file, resuming ``decoder``.

    The twin of ``recv_to_file`` for a body of unknown length: first the
    bytes fed to ``decoder`` (a ``ChunkedDecoder``), then what arrives on the
    socket, are decoded, and the data is written to ``file_fd`` at its offset
    (and given to ``hashers``).  It returns the data bytes written by this
    call once the body is complete (``decoder.complete``; ``decoder.leftover``
    then holds what was read past its end, for the next request) or when the
    peer closed before its end (not complete: ``decoder.phase`` says where it
    stopped).  ``timeout``, ``patience``, ``budget``, ``waited`` and
    ``writeback`` are recv_to_file's (any byte received, framing included,
    is progress); on BlockingIOError (patience or budget) the decoder keeps
    its place and the next call goes on from there.  ``reserve`` > 0 reserves
    space ahead within the current chunk only (C; ignored here).  Errors are
    recv_to_file's, with ``characters_written`` and ``idle``, plus OSError
    EPROTO for a framing error (checked as gunicorn checks it: hex sizes
    that fit in int64, RFC 9112 extensions, CRLF after the data, the bounds
    of the decoder's lines) and EFBIG once the data would pass ``max_size``
    (> 0); after those the decoder stays failed.  Trailers are not
    interpreted: ``decoder.trailers`` holds them for the caller.
    """
    clock = _Clock(timeout, patience, budget, waited, reserve)
    with clock.failing():
        if decoder.phase == "failed":  # raised again, with characters_written and idle as in C
            raise os_error(decoder._error, "receive")
        start = _offset(file_fd) if writeback > 0 and decoder.phase != "done" else -1
        _receive_chunked(sock_fd, file_fd, decoder, clock, hashers, start, writeback, max_size)
    return clock.done


def _receive_chunked(sock_fd, file_fd, decoder, clock, hashers, start, writeback, max_size):
    behind = [start]  # the call's start offset, -1 once the file cannot be written back

    def decode(data, received):
        runs: list = []
        try:
            decoder._decode(data, runs, max_size)
        finally:  # what was decoded before a failure is written, as lim->moved says in C
            runs = _merge_small(runs)
            for run in runs:
                for hasher in hashers:
                    hasher.update(run)
            written = _write_runs(file_fd, runs)
            at = behind[0] + clock.done
            if behind[0] >= 0 and written and not write_behind(file_fd, at, at + written, writeback):
                behind[0] = -1  # this file cannot be written back: just receive it
            clock.done += written
        if received and decoder.phase != "done" and clock.over_budget():
            raise os_error(errno.EAGAIN, "receive")

    if decoder._pending and decoder.phase != "done":
        decode(memoryview(bytes(decoder._pending)), False)
    if decoder.phase == "done":
        return
    buf = memoryview(bytearray(CHUNK))
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    while decoder.phase != "done":
        got = clock.recv(sock_fd, poller, buf)
        if got == 0:
            return  # the peer closed before the end: decoder.phase says where
        clock.last = time.monotonic()
        decode(buf[:got], True)


def _merge_small(runs):
    """The data runs of one piece, each small one joined to the run before it (as C merges them)."""
    merged: list = []
    for run in runs:
        if merged and len(run) <= _MERGE_MAX:
            if not isinstance(merged[-1], bytearray):
                merged[-1] = bytearray(merged[-1])
            merged[-1] += run
        else:
            merged.append(run)
    return merged


def _write_runs(fd, runs):
    """Write the data runs (memoryviews) with as few writev calls as it takes; their total."""
    total = sum(len(run) for run in runs)
    left = total
    while runs:
        n = os.writev(fd, runs[:1024])
        if n == 0:
            raise os_error(errno.EIO, "write")
        left -= n
        while runs and n >= len(runs[0]):
            n -= len(runs[0])
            runs.pop(0)
        if runs and n:
            runs[0] = runs[0][n:]
    return total


# ---- the transfer log's line ------------------------------------------------

# Client-given text is cut to these lengths (characters), so a line stays well under
# PIPE_BUF (4096) even when every character is escaped as \uXXXX: one write is then
# atomic on a pipe too (see pyai.ops.transfer_log).
TRANSFER_TEXT_MAX = 160
TRANSFER_FORWARDED_MAX = 128
TRANSFER_METHOD_MAX = 32
_json_string = json.encoder.encode_basestring_ascii  # what json.dumps escapes strings with
# The line, fields in the schema's order (pyai/ops/transfer_log.schema.json): one %-format of a tuple.
_LINE = (
    '{"time":"%s.%03dZ","method":%s,"path":%s,"id":%s,"status":%s,"bytes_sent":%d,"bytes_received":%d'
    ',"duration":%.6f,"ttfb":%s,"client":%s,"forwarded_for":%s,"token":%s,"digest":%s,"medium":%s'
    ',"stage_wait":%s,"pid":%d}\n'
)
# the last second formatted, and its text (one gmtime per second, not per line)
_second: Tuple[Optional[int], str] = (None, "")


def transfer_line(record, status, sent, client, pid):
    """The transfer log's JSON line of ``record`` (a ``pyai.ops.record.Record``): bytes, ASCII,
    ending in a newline.

    ``status`` is the status code answered (None: none), ``sent`` the body bytes sent,
    ``client`` the peer's address tuple, ``pid`` the worker's.  The fields are the
    schema's, in its order.  A text is escaped as json.dumps escapes it (ASCII) after
    being cut to its bound (``TRANSFER_METHOD_MAX``, ``TRANSFER_FORWARDED_MAX``, else
    ``TRANSFER_TEXT_MAX`` characters); None is null; seconds are to the microsecond
    and never negative; ``duration`` runs until now (``time.monotonic``).  A text
    that is not a str raises TypeError.
    """
    global _second
    duration = time.monotonic() - record.started
    wall = record.wall
    seconds = int(wall)
    cached, text = _second
    if cached != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = (seconds, text)  # one tuple: a thread reading it sees a second and its own text
    started, first_byte, stage_wait = record.started, record.first_byte, record.stage_wait
    body = record.body
    address = client[0] if isinstance(client, tuple) and client else None
    return (
        _LINE
        % (
            text,
            (wall - seconds) * 1000,
            _text(record.method, TRANSFER_METHOD_MAX),
            _text(record.path, TRANSFER_TEXT_MAX),
            _text(record.ident, TRANSFER_TEXT_MAX),
            "null" if status is None else int(status),
            sent,
            body.received if body is not None else 0,
            duration if duration > 0.0 else 0.0,
            "null" if first_byte is None else "%.6f" % (first_byte - started if first_byte > started else 0.0),
            _text(address, TRANSFER_TEXT_MAX),
            _text(record.forwarded_for, TRANSFER_FORWARDED_MAX),
            _text(record.token, TRANSFER_TEXT_MAX),
            _text(record.digest, TRANSFER_TEXT_MAX),
            _text(record.medium, TRANSFER_TEXT_MAX),
            "null" if stage_wait is None else "%.6f" % (stage_wait if stage_wait > 0.0 else 0.0),
            pid,
        )
    ).encode("ascii")


def _text(value, most):
    if value is None:
        return "null"
    if not isinstance(value, str):
        raise TypeError(f"a transfer log text must be str, not {type(value).__name__}")
    return _json_string(value if len(value) <= most else value[:most])


def plain_parser():
    """The library the plain-head parser was loaded from: None, pure Python has none."""
    return None


def plain_limits(line, fields, field):
    """The head limits ``plain_request`` checks: nothing to set without a parser."""


def read_plain(fd, head):
    """Receive what socket ``fd`` holds, without waiting, onto the end of ``head``; then
    ``plain_request(head)`` (always None here).  None as well when nothing came."""
    with socket.socket(fileno=os.dup(fd)) as sock:  # a duplicate: closing it leaves fd open
        try:
            data = sock.recv(16384, socket.MSG_DONTWAIT)
        except OSError:
            return None
    head += data
    return plain_request(head) if data else None


def format_answer(status, headers, must_close, server, date, body):
    """An answer's bytes, and whether its connection closes after it: ``(data, closes)``.

    The head is ``HTTP/1.1 <status>``, then Server, Date and Connection, then ``headers``
    (a list of ``(name, value)`` str pairs) in order, each line ending in CRLF, in Latin-1
    (UnicodeEncodeError past it); ``body`` (bytes) follows the blank line, or nothing when
    it is None (a HEAD's, a 204's, or a body sent after the head).  The connection closes
    when ``must_close`` says so, or when a body goes without a Content-Length (it ends
    with the connection then).
    """
    closes = bool(must_close)
    if body is not None and not any(name == "Content-Length" for name, _ in headers):
        closes = True
    connection = "close" if closes else "keep-alive"
    lines = [f"HTTP/1.1 {status}\r\nServer: {server}\r\nDate: {date}\r\nConnection: {connection}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    lines.append("\r\n")
    data = "".join(lines).encode("latin-1")
    return (data + body if body is not None else data), closes


def plain_request(head):
    """None: without the C parser every head takes the full path (``pyai.server.head``).
    The C twin recognises a plain head here; see its docstring."""
    return None
