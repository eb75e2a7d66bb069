"""The I/O primitives of pyai in C (csrc/pyai_io.c), with the GIL released.

Same names, signatures and behaviour as the pure-Python twin ``pyai.native._pyimpl``;
import them from ``pyai.native``, which picks one.  Every OS failure is raised
by ``pyai.errors.os_error`` with the operation's name.
"""

import fcntl
import os
import threading

from cpython.buffer cimport PyBUF_READ, PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from cpython.memoryview cimport PyMemoryView_FromMemory
from libc.errno cimport EEXIST
from libc.limits cimport INT_MAX
from libc.math cimport ceil
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, strlen

from pyai.native._cdecl cimport *

cdef extern from "errno.h":
    enum:
        ECANCELED  # not in Cython's libc.errno

cdef extern from "fcntl.h":
    enum:
        AT_FDCWD

from pyai.errors import os_error

FADV_NORMAL = PYAI_FADV_NORMAL
FADV_SEQUENTIAL = PYAI_FADV_SEQUENTIAL
FADV_RANDOM = PYAI_FADV_RANDOM
FADV_WILLNEED = PYAI_FADV_WILLNEED
FADV_DONTNEED = PYAI_FADV_DONTNEED
FADV_NOREUSE = PYAI_FADV_NOREUSE


cdef int64_t check(int64_t rc, str op, object path=None) except -1:
    """``rc`` itself, or, when it is a negative errno, the OSError of ``op`` (on ``path``) raised."""
    if rc < 0:
        raise os_error(rc, op, path)
    return rc


cdef int _timeout_ms(timeout) except? -2:
    """poll() milliseconds: rounded up (a short timeout must not become 0), -1 = forever."""
    cdef double ms
    if timeout is None or timeout <= 0:
        return -1
    ms = ceil(timeout * 1000.0)
    if ms != ms:
        raise ValueError("timeout is NaN")
    return <int>ms if ms < INT_MAX else INT_MAX


cdef int _limit_ms(seconds) except? -2:
    """poll() milliseconds of a patience or budget: rounded up, None = no limit (-1), 0 = do not wait."""
    cdef double ms
    if seconds is None:
        return -1
    ms = ceil(seconds * 1000.0)
    if ms != ms:
        raise ValueError("limit is NaN")
    if ms <= 0:
        return 0
    return <int>ms if ms < INT_MAX else INT_MAX


cdef int _set_limits(pyai_recv_limits *lim, timeout, patience, budget, waited, int64_t reserve,
                     int64_t writeback) except -1:
    """Fill ``lim`` from the arguments of a receive (the one place: recv_to_file, recv_chunked_to_file)."""
    lim.timeout_ms = _timeout_ms(timeout)
    lim.patience_ms = _limit_ms(patience)
    lim.budget_ms = _limit_ms(budget)
    lim.waited_ms = max(0, _limit_ms(waited) if waited else 0)
    lim.reserve_step = reserve if reserve > 0 else 0
    lim.writeback_step = writeback if writeback > 0 else 0
    lim.moved = 0
    lim.idle_ms = 0
    return 0


cdef _raise_received(int64_t rc, pyai_recv_limits *lim, list interrupted):
    """Raise the failure ``rc`` (< 0) of a receive: the exception a signal handler or hasher
    raised meanwhile, else ``os_error`` with ``characters_written`` and ``idle``."""
    # A callback's exception wins, also over a framing error later in the same piece
    # (a chunked body's runs are hashed when the piece is written): as in the twin.
    # (recv_to_file stops with -EINTR or -ECANCELED whenever a callback kept one.)
    if interrupted:
        raise interrupted[0]
    exc = os_error(rc, "receive")
    exc.characters_written = lim.moved
    exc.idle = lim.idle_ms / 1000.0
    raise exc


cdef int _run_signal_handlers(void *box) noexcept nogil:
    # Called by C on EINTR: run Python's signal handlers as any blocking call
    # does (PEP 475); if one raises, keep its exception and stop the call.
    with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            (<list>box).append(exc)
            return 1
    return 0


cdef bytes _path(path):
    cdef bytes b = os.fsencode(path)
    if b"\0" in b:
        raise ValueError("embedded null byte")
    return b


cdef int _feed_hashers(void *box, const char *buf, size_t length) noexcept nogil:
    # Called by C with each received piece: update every hasher (hashlib
    # releases the GIL itself while it digests pieces this large).
    with gil:
        try:
            view = PyMemoryView_FromMemory(<char *>buf, <Py_ssize_t>length, PyBUF_READ)
            try:
                for hasher in (<tuple>box)[0]:
                    hasher.update(view)
            finally:
                view.release()
        except BaseException as exc:
            (<tuple>box)[1].append(exc)
            return -ECANCELED
    return 0


# Bodies at least this large are hashed by a second thread beside the
# receive (socket -> pipe -> file with splice, the pipe teed to the hashing
# thread): the digest then costs the other core, not the receive's time.
# Smaller ones are hashed in line; a thread would cost more than it overlaps.
HASH_BESIDE_FROM = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class _PipeHasher(threading.Thread):
    """Reads a pipe to its end and gives every byte to the hashers.

    readv and hashlib both release the GIL, so this runs beside the receive.
    The read end is closed when it stops, so a receive still teeing into a
    pipe nobody reads gets EPIPE instead of waiting."""

    def __init__(self, fd, hashers):
        super().__init__(name="pyai-digest", daemon=True)
        self.fd = fd
        self.hashers = tuple(hashers)
        self.error = None

    def run(self):
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        # digests that read the pipe into buffers of their own (pyai.archive.beside.Beside.fill):
        # the bytes are copied once, from the pipe into what the digest threads hash
        fill = getattr(self.hashers[0], "fill", None) if len(self.hashers) == 1 else None
        try:
            while fill is not None:
                if not fill(self.fd):
                    return
            while True:
                n = os.readv(self.fd, [buf])
                if n == 0:
                    return
                for hasher in self.hashers:
                    hasher.update(view[:n])
        except BaseException as exc:  # handed to the receiving thread
            self.error = exc
        finally:
            os.close(self.fd)


def recv_to_file(int sock_fd, int file_fd, int64_t nbytes, timeout, hashers=(), patience=None, *,
                 budget=None, waited=0.0, int64_t reserve=0, int64_t writeback=0):
    """Move up to ``nbytes`` from a stream socket to a file; fewer only if the peer closed.

    The contract (timeout, patience, budget, waited, reserve, writeback, the exceptions
    and their ``characters_written``/``idle``) is the pure twin's, documented
    once in ``pyai.native._pyimpl.recv_to_file``.  Here the bytes go socket ->
    pipe -> file by splice(2) with the GIL released; with ``hashers`` the pipe
    is teed to a thread that hashes beside the receive (small bodies are hashed
    in line).  A TCP urgent byte in the stream is dropped (it is not data).
    """
    cdef pyai_recv_limits lim
    cdef int64_t rc
    cdef list interrupted = []
    cdef tuple box
    _set_limits(&lim, timeout, patience, budget, waited, reserve, writeback)
    if nbytes < 0:
        raise ValueError("nbytes must be >= 0")
    if hashers and nbytes >= HASH_BESIDE_FROM:
        rc = _recv_hashing_beside(sock_fd, file_fd, nbytes, &lim, hashers, interrupted)
    elif not hashers:
        with nogil:
            rc = pyai_recv_to_file(sock_fd, file_fd, nbytes, &lim, _run_signal_handlers, <void *>interrupted)
    else:
        box = (tuple(hashers), interrupted)
        with nogil:
            rc = pyai_recv_to_file_seen(sock_fd, file_fd, nbytes, &lim, _run_signal_handlers, <void *>interrupted,
                                        _feed_hashers, <void *>box)
    if rc < 0:
        _raise_received(rc, &lim, interrupted)
    return rc


cdef int64_t _recv_hashing_beside(int sock_fd, int file_fd, int64_t nbytes, pyai_recv_limits *lim, hashers,
                                  list interrupted) except? -1:
    # The C receive's result (-errno on failure), or the hashing thread's exception raised.
    # The thread is joined before returning: the hashers have seen every byte moved.
    cdef int64_t rc
    cdef int tee_fd
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass  # a smaller pipe only means more, shorter tees
    hasher = _PipeHasher(read_fd, hashers)
    try:
        hasher.start()
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    tee_fd = write_fd
    try:
        with nogil:
            rc = pyai_recv_to_file_tee(sock_fd, file_fd, nbytes, lim, _run_signal_handlers, <void *>interrupted, tee_fd)
    finally:
        os.close(write_fd)  # the hasher sees the end of the pipe
        hasher.join()
    if hasher.error is not None:
        raise hasher.error
    return rc


def write_all(int fd, data):
    """Write every byte of the bytes-like ``data`` to ``fd``."""
    cdef Py_buffer view
    cdef int rc
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        with nogil:
            rc = pyai_write_all(fd, view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    check(rc, "write")


def copy_fd(int src_fd, int dst_fd, int64_t nbytes):
    """Copy ``nbytes`` between the current offsets in the kernel; fewer only at source EOF."""
    cdef int64_t rc
    if nbytes < 0:
        raise ValueError("nbytes must be >= 0")
    with nogil:
        rc = pyai_copy_fd(src_fd, dst_fd, nbytes)
    return check(rc, "copy")


def rename_noreplace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
    """Publish ``src`` as ``dst``; FileExistsError (naming dst) if dst exists.

    As os.rename: ``src_dir_fd``/``dst_dir_fd`` make the names relative to
    those directories.  See the pure twin's docstring.
    """
    cdef bytes bsrc = _path(src), bdst = _path(dst)
    cdef const char *csrc = bsrc
    cdef const char *cdst = bdst
    cdef int sfd = AT_FDCWD if src_dir_fd is None else src_dir_fd
    cdef int dfd = AT_FDCWD if dst_dir_fd is None else dst_dir_fd
    cdef int rc
    with nogil:
        rc = pyai_rename_noreplace(sfd, csrc, dfd, cdst)
    if rc < 0:
        raise os_error(rc, "publish", dst if rc == -EEXIST else src)


def openat2(int dir_fd, path, int flags, uint64_t resolve):
    """openat2(2) of ``path`` below ``dir_fd``: the new descriptor; see the pure twin's docstring."""
    cdef bytes b = _path(path)
    cdef const char *c = b
    cdef int rc
    with nogil:
        rc = pyai_openat2(dir_fd, c, flags, resolve)
    return check(rc, "open", path)


def fsync(int fd):
    """Flush ``fd``'s data and metadata to stable storage."""
    cdef int rc
    with nogil:
        rc = pyai_fsync(fd)
    check(rc, "fsync")


def write_behind(int fd, int64_t start, int64_t end, int64_t step):
    """Write back behind a writer that wrote ``[start, end)``; see the pure twin's docstring."""
    cdef int rc
    if step <= 0 or start < 0 or end < start:
        raise ValueError("need step > 0 and 0 <= start <= end")
    with nogil:
        rc = pyai_write_behind(fd, start, end, step)
    if rc < 0:
        if pyai_write_behind_unsupported(rc):
            return False
        raise os_error(rc, "writeback")
    return True


def fsync_dir(path):
    """fsync the directory ``path`` so entries added or removed in it survive a crash."""
    cdef bytes b = _path(path)
    cdef const char *c = b
    cdef int rc
    with nogil:
        rc = pyai_fsync_dir(c)
    check(rc, "fsync", path)


def fadvise(int fd, int64_t offset, int64_t length, int advice):
    """posix_fadvise (``length`` 0 means to the end of the file)."""
    cdef int rc
    with nogil:
        rc = pyai_fadvise(fd, offset, length, advice)
    check(rc, "fadvise")


def preallocate(int fd, int64_t nbytes, int64_t offset=0):
    """Reserve ``nbytes`` from ``offset`` on without changing the size; False if the file system cannot."""
    cdef int rc
    if nbytes < 0 or offset < 0:
        raise ValueError("nbytes and offset must be >= 0")
    with nogil:
        rc = pyai_preallocate(fd, offset, nbytes)
    return check(rc, "preallocate") == 1


def write_back(int fd):
    """Write back all of ``fd``'s dirty pages and wait for them; see the pure twin's docstring."""
    cdef int rc
    with nogil:
        rc = pyai_write_back(fd)
    check(rc, "writeback")


def syncfs(int fd):
    """syncfs(2) the file system of ``fd``; see the pure twin's docstring."""
    cdef int rc
    with nogil:
        rc = pyai_syncfs(fd)
    check(rc, "syncfs")


# ---- chunked bodies ---------------------------------------------------------------

_PHASES = {
    PYAI_CHUNKED_SIZE: "size",
    PYAI_CHUNKED_DATA: "data",
    PYAI_CHUNKED_CRLF: "crlf",
    PYAI_CHUNKED_TRAILER: "trailer",
    PYAI_CHUNKED_DONE: "done",
    PYAI_CHUNKED_FAILED: "failed",
}
cdef class ChunkedDecoder:
    """The state of one chunked body across calls of ``recv_chunked_to_file``; see the pure twin."""

    cdef pyai_chunked st

    def __cinit__(self, *, int max_line=PYAI_CHUNKED_MAX_LINE, int max_trailer=PYAI_CHUNKED_MAX_TRAILER):
        pyai_chunked_init(&self.st, 0)
        if max_line <= 0 or max_trailer <= 0:
            raise ValueError("max_line and max_trailer must be > 0")
        self.st.max_line = max_line
        self.st.max_trailer = max_trailer

    def __dealloc__(self):
        pyai_chunked_free(&self.st)

    def feed(self, data):
        """Bytes already read from the socket, decoded before it is read."""
        cdef Py_buffer view
        cdef int rc
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            rc = pyai_chunked_feed(&self.st, view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)
        if rc < 0:
            raise MemoryError()

    @property
    def phase(self):
        return _PHASES[self.st.phase]

    @property
    def complete(self):
        return self.st.phase == PYAI_CHUNKED_DONE

    @property
    def decoded(self):
        return self.st.decoded

    @property
    def leftover(self):
        if self.st.phase != PYAI_CHUNKED_DONE or self.st.len <= self.st.pos:
            return b""
        return self.st.buf[self.st.pos:self.st.len]

    @property
    def trailers(self):
        if self.st.phase != PYAI_CHUNKED_DONE or self.st.trailer_len == 0:
            return b""
        return self.st.trailer[:self.st.trailer_len]


def recv_chunked_to_file(int sock_fd, int file_fd, ChunkedDecoder decoder, timeout, hashers=(), patience=None, *,
                         budget=None, waited=0.0, int64_t reserve=0, int64_t writeback=0, int64_t max_size=0):
    """Decode a chunked body from a stream socket into a file, resuming ``decoder``.

    The contract is the pure twin's, documented once in
    ``pyai.native._pyimpl.recv_chunked_to_file``.  Here the decoding runs in
    C (csrc/pyai_chunked.c) with the GIL released.  The data runs are hashed
    in line, before they are written: every byte passes through user space
    anyway, and a hashing thread fed by a pipe (as recv_to_file does) costs
    two more copies and a thread -- measured on a 1 GiB curl PUT (sha256, 2
    cores): 698 MB/s in line, 415 MB/s beside.
    """
    cdef pyai_recv_limits lim
    cdef int64_t rc
    cdef list interrupted = []
    cdef tuple box
    cdef pyai_chunked *st = &decoder.st
    _set_limits(&lim, timeout, patience, budget, waited, reserve, writeback)
    st.max_size = max_size if max_size > 0 else 0
    if not hashers:
        with nogil:
            rc = pyai_recv_chunked(sock_fd, file_fd, st, &lim, _run_signal_handlers, <void *>interrupted,
                                   NULL, NULL, -1)
    else:
        box = (tuple(hashers), interrupted)
        with nogil:
            rc = pyai_recv_chunked(sock_fd, file_fd, st, &lim, _run_signal_handlers, <void *>interrupted,
                                   _feed_hashers, <void *>box, -1)
    if rc < 0:
        _raise_received(rc, &lim, interrupted)
    return rc


# ---- the transfer log's line ------------------------------------------------

cdef extern from "time.h" nogil:
    ctypedef long time_t
    struct tm:
        pass
    struct timespec:
        time_t tv_sec
        long tv_nsec
    tm *gmtime_r(const time_t *timep, tm *result)
    size_t strftime(char *s, size_t maxsize, const char *fmt, const tm *t)
    int clock_gettime(int clk_id, timespec *tp)
    int CLOCK_MONOTONIC

cdef extern from "stdio.h" nogil:
    int snprintf(char *s, size_t n, const char *fmt, ...)

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_1BYTE_KIND, PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND

# The longest line: the fixed text, the numbers, and six texts of at most
# _TEXT_MAX characters, each escaped to at most 12 bytes (a surrogate pair).
cdef enum:
    _LINE_CAP = 16384
    _TEXT_MAX = 160  # the bounds: the pure twin's TRANSFER_*_MAX
    _METHOD_MAX = 32
    _FORWARDED_MAX = 128

TRANSFER_TEXT_MAX = _TEXT_MAX
TRANSFER_FORWARDED_MAX = _FORWARDED_MAX
TRANSFER_METHOD_MAX = _METHOD_MAX


cdef struct _Line:
    char buf[_LINE_CAP]
    Py_ssize_t len

cdef long long _second = -1  # the second last formatted (the GIL guards both)
cdef char _second_text[32]
cdef const char *_HEX = b"0123456789abcdef"


cdef inline int _raw(_Line *line, const char *text, Py_ssize_t n) except -1:
    if line.len + n > _LINE_CAP:
        raise ValueError(f"the formatted text is longer than {_LINE_CAP} bytes")
    memcpy(line.buf + line.len, text, n)
    line.len += n
    return 0


cdef inline int _key(_Line *line, const char *text) except -1:
    """A fixed part of the line (a C string literal: its length is the compiler's)."""
    return _raw(line, text, strlen(text))


cdef inline int _latin1(_Line *line, str text) except -1:
    """``text`` in Latin-1 (UnicodeEncodeError past it, as str.encode says)."""
    if PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND:
        text.encode("latin-1")  # a str that is not one byte per character holds one past U+00FF
    return _raw(line, <const char *>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))


cdef inline int _number(_Line *line, const char *fmt, double value) except -1:
    cdef char tmp[64]
    cdef int n = snprintf(tmp, sizeof(tmp), fmt, value)
    return _raw(line, tmp, n)


cdef inline int _integer(_Line *line, long long value, int width=0) except -1:
    """``value`` in decimal, zero-padded to ``width`` digits (printf's %lld, faster)."""
    cdef char tmp[24]
    cdef int i = 24
    cdef unsigned long long magnitude = <unsigned long long>(-(value + 1)) + 1 if value < 0 else <unsigned long long>value
    while True:
        i -= 1
        tmp[i] = <char>(48 + magnitude % 10)
        magnitude //= 10
        width -= 1
        if magnitude == 0 and width <= 0:
            break
    if value < 0:
        i -= 1
        tmp[i] = b'-'
    return _raw(line, tmp + i, 24 - i)


cdef inline void _u_escape(char *out, unsigned int c):
    out[0] = b'\\'
    out[1] = b'u'
    out[2] = _HEX[(c >> 12) & 15]
    out[3] = _HEX[(c >> 8) & 15]
    out[4] = _HEX[(c >> 4) & 15]
    out[5] = _HEX[c & 15]


cdef int _text(_Line *line, object value, Py_ssize_t most) except -1:
    """``value`` cut to ``most`` characters, as JSON (json.dumps's ASCII escaping), or null."""
    cdef unicode text
    cdef Py_ssize_t i, n
    cdef Py_UCS4 c
    cdef unsigned int v
    cdef char *out
    if value is None:
        return _key(line, b"null")
    if type(value) is not unicode:
        if not isinstance(value, unicode):
            raise TypeError(f"a transfer log text must be str, not {type(value).__name__}")
    text = <unicode>value
    n = len(text)
    if n > most:
        n = most
    if line.len + 2 + 12 * n > _LINE_CAP:
        raise ValueError(f"the formatted text is longer than {_LINE_CAP} bytes")
    out = line.buf + line.len
    out[0] = b'"'
    out += 1
    for i in range(n):
        c = text[i]
        if c >= 0x20 and c < 0x7f and c != 0x22 and c != 0x5c:
            out[0] = <char>c
            out += 1
        elif c == 0x22 or c == 0x5c:
            out[0] = b'\\'
            out[1] = <char>c
            out += 2
        elif c == 0x0a or c == 0x0d or c == 0x09 or c == 0x08 or c == 0x0c:
            out[0] = b'\\'
            out[1] = b'n' if c == 0x0a else b'r' if c == 0x0d else b't' if c == 0x09 else b'b' if c == 0x08 else b'f'
            out += 2
        elif c > 0xffff:
            v = <unsigned int>c - 0x10000
            _u_escape(out, 0xd800 | (v >> 10))
            _u_escape(out + 6, 0xdc00 | (v & 0x3ff))
            out += 12
        else:
            _u_escape(out, <unsigned int>c)
            out += 6
    out[0] = b'"'
    out += 1
    line.len = out - line.buf
    return 0


cdef inline int _seconds_or_null(_Line *line, object value) except -1:
    cdef double seconds
    if value is None:
        return _key(line, b"null")
    seconds = value
    return _number(line, "%.6f", seconds if seconds > 0.0 else 0.0)


# A member of the line: its key (with the punctuation before it), then its value.
cdef inline int _text_field(_Line *line, const char *key, object value, Py_ssize_t most) except -1:
    _key(line, key)
    return _text(line, value, most)


cdef inline int _integer_field(_Line *line, const char *key, long long value) except -1:
    _key(line, key)
    return _integer(line, value)


cdef inline int _seconds_field(_Line *line, const char *key, object value) except -1:
    _key(line, key)
    return _seconds_or_null(line, value)


def transfer_line(record, status, long long sent, client, long long pid):
    """The transfer log's JSON line of ``record`` (bytes, ASCII, ending in a newline).

    The contract (fields, their order, bounds and escaping) is the pure twin's,
    documented once in ``pyai.native._pyimpl.transfer_line``; here the line is
    formatted in C, into one buffer.
    """
    global _second
    cdef _Line line
    cdef timespec now
    cdef double wall = record.wall
    cdef double started = record.started
    cdef double duration
    cdef long long seconds = <long long>wall
    cdef time_t as_time
    cdef tm parts
    cdef object first_byte = record.first_byte
    cdef object body = record.body
    cdef object address = None
    line.len = 0
    if seconds != _second:
        as_time = <time_t>seconds
        if gmtime_r(&as_time, &parts) == NULL or strftime(_second_text, sizeof(_second_text), "%Y-%m-%dT%H:%M:%S", &parts) == 0:
            raise ValueError("the time cannot be formatted")
        _second = seconds
    clock_gettime(CLOCK_MONOTONIC, &now)
    duration = now.tv_sec + now.tv_nsec * 1e-9 - started
    if isinstance(client, tuple) and client:
        address = client[0]
    _key(&line, b'{"time":"')
    _key(&line, _second_text)
    _key(&line, b".")
    _integer(&line, <long long>((wall - seconds) * 1000), 3)
    _text_field(&line, b'Z","method":', record.method, _METHOD_MAX)
    _text_field(&line, b',"path":', record.path, _TEXT_MAX)
    _text_field(&line, b',"id":', record.ident, _TEXT_MAX)
    _key(&line, b',"status":')
    if status is None:
        _key(&line, b"null")
    else:
        _integer(&line, int(status))
    _integer_field(&line, b',"bytes_sent":', sent)
    _integer_field(&line, b',"bytes_received":', body.received if body is not None else 0)
    _key(&line, b',"duration":')
    _number(&line, "%.6f", duration if duration > 0.0 else 0.0)
    _seconds_field(&line, b',"ttfb":', None if first_byte is None else first_byte - started)
    _text_field(&line, b',"client":', address, _TEXT_MAX)
    _text_field(&line, b',"forwarded_for":', record.forwarded_for, _FORWARDED_MAX)
    _text_field(&line, b',"token":', record.token, _TEXT_MAX)
    _text_field(&line, b',"digest":', record.digest, _TEXT_MAX)
    _text_field(&line, b',"medium":', record.medium, _TEXT_MAX)
    _seconds_field(&line, b',"stage_wait":', record.stage_wait)
    _integer_field(&line, b',"pid":', pid)
    _key(&line, b"}\n")
    return PyBytes_FromStringAndSize(line.buf, line.len)


# ---- plain request heads (csrc/pyai_plain.c) ----------------------------------

cdef enum:
    _PLAIN_RECV = 16384  # what read_plain takes from the socket at once (a longer head: the caller reads on)

cdef bint _plain_loaded = pyai_plain_load() == 0
cdef pyai_plain_limits _plain_limits = pyai_plain_limits(8190, 100, 8190)


def plain_parser():
    """The library the plain-head parser (picohttpparser) was loaded from, or None."""
    return pyai_plain_library().decode() if _plain_loaded else None


def plain_limits(size_t line, size_t fields, size_t field):
    """Set gunicorn's head limits (``limit_request_line``, ``_fields``, ``_field_size``) that
    ``plain_request`` checks; a head over one is not plain (the full path refuses it)."""
    _plain_limits.line = line
    _plain_limits.fields = fields
    _plain_limits.field = field


def read_plain(int fd, bytearray head):
    """Receive what socket ``fd`` holds, without waiting, onto the end of ``head``; then
    ``plain_request(head)``.  None as well when nothing came (no byte yet, the peer closed,
    an error): the caller's own read finds out which."""
    cdef char buf[_PLAIN_RECV]
    cdef Py_ssize_t size = PyByteArray_GET_SIZE(head)
    cdef ssize_t got = pyai_plain_recv(fd, buf, sizeof(buf))  # it does not wait: the GIL stays
    if got <= 0:
        return None
    PyByteArray_Resize(head, size + got)
    memcpy(PyByteArray_AS_STRING(head) + size, buf, got)
    return plain_request(head)


def format_answer(str status, list headers, bint must_close, str server, str date, body):
    """An answer's bytes, and whether its connection closes after it: ``(data, closes)``.
    See the pure twin's docstring; the head is formatted into one buffer here."""
    cdef _Line line
    cdef bint closes = must_close
    cdef Py_ssize_t length = 0
    cdef object data
    cdef char *out
    if body is not None:
        closes = closes or not any(name == "Content-Length" for name, _ in headers)
        length = len(<bytes>body)
    line.len = 0
    _key(&line, b"HTTP/1.1 ")
    _latin1(&line, status)
    _key(&line, b"\r\nServer: ")
    _latin1(&line, server)
    _key(&line, b"\r\nDate: ")
    _latin1(&line, date)
    _key(&line, b"\r\nConnection: close\r\n" if closes else b"\r\nConnection: keep-alive\r\n")
    for name, value in headers:
        _latin1(&line, name)
        _key(&line, b": ")
        _latin1(&line, value)
        _key(&line, b"\r\n")
    _key(&line, b"\r\n")
    data = PyBytes_FromStringAndSize(NULL, line.len + length)
    out = PyBytes_AS_STRING(data)
    memcpy(out, line.buf, line.len)
    if length:
        memcpy(out + line.len, PyBytes_AS_STRING(body), length)
    return data, closes


def plain_request(bytearray head):
    """The complete request head at the start of ``head``, when it is plain: a tuple
    ``(length, method, target, keep_alive, version)`` (the head's length through its
    blank line, "GET" or "HEAD", the target as bytes, whether the connection persists,
    "1.0" or "1.1"); None for any other head, or an incomplete one, or without a parser.

    Plain: the request line ``GET|HEAD SP /<segment> SP HTTP/1.x CRLF`` with a segment of
    visible ASCII other than ``%``, ``?``, ``#`` and ``/``, lines ending in CRLF, and no
    field but those of ``pyai.serving.PLAIN_FIELDS``, within the head limits.
    """
    cdef pyai_plain_request req
    cdef long length = pyai_plain_parse(PyByteArray_AS_STRING(head), PyByteArray_GET_SIZE(head), &_plain_limits, &req)
    if length <= 0:
        return None
    return (
        length,
        "GET" if req.method == PYAI_PLAIN_GET else "HEAD",
        PyBytes_FromStringAndSize(PyByteArray_AS_STRING(head) + req.target_offset, req.target_length),
        bool(req.keep_alive),
        "1.1" if req.minor_version == 1 else "1.0",
    )
