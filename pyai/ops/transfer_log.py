"""The JSON transfer log: one line per request, what it did and how long it took.

``[ops] transfer_log`` says where: ``-`` (stderr, the default), a file, or
``off``.  A file is opened with O_APPEND by every worker process.  A request's
line is made on its own thread (formatted in C by ``pyai.native.transfer_line``,
whose pure twin documents the fields) and queued as bytes; the queue is written
in batches of whole lines, each batch one ``os.write`` of at most PIPE_BUF bytes: the kernel
appends each write whole, so lines of several threads and processes never
interleave, on a file or a pipe, and no line is ever split across two writes.
A batch is written once ``BATCH_LINES`` lines wait (by the thread that queued
the last one), else by ``flush``, which ``pyai.ops.observe`` calls every
``observe.FLUSH_INTERVAL`` seconds, on USR1 and at the worker's exit: a line
is at most that late.  The queue is a deque (its append and popleft are
atomic), so no request takes a lock.  On USR1 (logrotate's ``postrotate``)
the queued lines go to the old file, then the file is opened again by name
and the new descriptor is ``dup2``-ed over the old one, so a write racing the
reopen lands in one file or the other, never on a closed descriptor.  The
fields are documented in docs/operating.md and in ``transfer_log.schema.json``
(shipped beside this module); they are a contract.

Nothing here raises into a request: a line that cannot be written is lost,
counted, and said once in the error log (and once more when writing works again).
"""

import collections
import errno
import logging
import os
from typing import TYPE_CHECKING, Deque, List, Optional

from pyai import native
from pyai.errors import ConfigError
from pyai.ops.record import Record

if TYPE_CHECKING:
    from pyai.config import Config

STDERR, OFF = "-", "off"
OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
FILE_MODE = 0o640  # a new log is the service's and its group's (it names clients and tokens)
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transfer_log.schema.json")
# Client-given text is cut to these lengths (see pyai.native.transfer_line), so a line stays well
# under PIPE_BUF (4096) even when every character is escaped as \uXXXX: one write is then atomic
# on a pipe too.
PATH_MAX = native.TRANSFER_TEXT_MAX
FORWARDED_MAX = native.TRANSFER_FORWARDED_MAX
METHOD_MAX = native.TRANSFER_METHOD_MAX
PIPE_BUF = 4096  # the most one write may carry: atomic on a pipe, and a line is always shorter
BATCH_LINES = 10  # lines a request's thread lets wait before it writes them (3.5 KB of ~350-byte lines)

log = logging.getLogger("gunicorn.error")  # the worker's error log
_transfer_line = native.transfer_line


class TransferLog:
    """Where the lines go: stderr, or a file opened by name (again on ``reopen``)."""

    def __init__(self, target: str) -> None:
        self.target = target  # STDERR or an absolute file name
        self.fd: Optional[int] = 2 if target == STDERR else None
        self.failing = False  # the last write failed (said once, until one succeeds)
        self.lost = 0  # lines lost since writing last worked
        self.queue: Deque[bytes] = collections.deque()  # lines made and not yet written, oldest first

    def open(self) -> None:
        """Open the file (a no-op for stderr); OSError when it cannot be."""
        if self.target == STDERR:
            return
        fd = os.open(self.target, OPEN_FLAGS, FILE_MODE)
        if self.fd is None:
            self.fd = fd
            return
        try:
            # over the old descriptor: a thread writing now writes to the old file or the new one
            os.dup2(fd, self.fd, inheritable=False)
        finally:
            os.close(fd)

    def flush(self, most: Optional[int] = None) -> None:
        """Write the lines queued now (``most`` of them at most), in writes of whole lines of at most
        PIPE_BUF bytes; never raises.  Threads flushing at once each pop their own lines: none is
        written twice or lost (their order across threads is the order they were popped)."""
        queue = self.queue
        popleft = queue.popleft
        batch: List[bytes] = []
        try:
            for _ in range(len(queue) if most is None else most):
                batch.append(popleft())
        except IndexError:  # another thread took the rest
            pass
        if not batch:
            return
        data = b"".join(batch)
        if len(data) <= PIPE_BUF:
            self._write(data, len(batch))
            return
        chunk: List[bytes] = []  # more than one write: whole lines in each
        size = 0
        for one in batch:
            if size + len(one) > PIPE_BUF:
                self._write(b"".join(chunk), len(chunk))
                chunk, size = [], 0
            chunk.append(one)
            size += len(one)
        self._write(b"".join(chunk), len(chunk))

    def _write(self, data: bytes, lines: int) -> None:
        try:
            if self.fd is None:
                raise OSError(errno.EBADF, "the file could not be opened")
            written = os.write(self.fd, data)
            while written < len(data):  # only on a full disk: the rest follows
                data = data[written:]
                written = os.write(self.fd, data)
        except OSError as exc:
            self.lost += lines
            if not self.failing:
                self.failing = True
                log.error(
                    "cannot write the transfer log %s (%s): requests go on, their lines are lost until it can",
                    self.name(),
                    exc.strerror or exc,
                )
            return
        if self.failing:
            self.failing = False
            log.warning("the transfer log %s is written again; %d line(s) were lost", self.name(), self.lost)
            self.lost = 0

    def name(self) -> str:
        return "stderr" if self.target == STDERR else self.target


_log: Optional[TransferLog] = None  # this process's TransferLog, None when off
_pid = 0


def check_config(config: "Config") -> None:
    """At start-up, in the master: a file the workers could not open stops the service with one line.

    The master creates nothing: the workers do, so a new file is theirs (gunicorn's
    ``user`` setting may have them run as another user than the master).
    """
    target = config.transfer_log
    if target in (STDERR, OFF):
        return
    parent = os.path.dirname(target)
    problem: Optional[str]
    if os.path.isdir(target):
        problem = "it is a directory"
    elif os.path.exists(target):
        problem = None if os.access(target, os.W_OK) else "it is not writable by this user"
    elif not os.path.isdir(parent):
        problem = f"its directory {parent} does not exist"
    else:
        problem = None if os.access(parent, os.W_OK | os.X_OK) else f"its directory {parent} is not writable"
    if problem:
        raise ConfigError(f"cannot open the transfer log {target}: {problem}")


def open_log(config: "Config") -> None:
    """In each worker process, before it serves."""
    global _log, _pid
    _pid = os.getpid()
    if _log is not None:
        _log.flush()  # a second open_log (the benchmarks): the lines of the first go where they were meant to
    _log = None if config.transfer_log == OFF else TransferLog(config.transfer_log)
    if _log is not None:
        _reopen(_log)


def reopen() -> None:
    """USR1: the lines queued go to the old file, then the file is opened again by name (logrotate
    has moved the old one away)."""
    if _log is not None:
        _log.flush()
        _reopen(_log)


def flush() -> None:
    """Write every line queued now (from ``pyai.ops.observe.flush``: its timer, and the exit)."""
    transfer_log = _log
    if transfer_log is not None:
        transfer_log.flush()


def _reopen(transfer_log: TransferLog) -> None:
    try:
        transfer_log.open()
    except OSError as exc:  # the lines go on to the old file, if there is one
        log.error("cannot open the transfer log %s: %s", transfer_log.target, exc.strerror)


def write(record: Record, status: Optional[int], sent: int, client: object) -> None:
    """The line of a finished request (see ``pyai.ops.observe.finished``)."""
    transfer_log = _log
    if transfer_log is None:
        return
    try:
        data = _transfer_line(record, status, sent, client, _pid)
    except Exception:  # noqa: BLE001 - a record that cannot be logged must not fail its request
        log.exception("cannot make the transfer log line of a request")
        return
    queue = transfer_log.queue  # TransferLog.add, inline: this runs once per request
    queue.append(data)
    if len(queue) >= BATCH_LINES:
        transfer_log.flush(len(queue))


def line(record: Record, status: Optional[int], sent: int, client: object, pid: int) -> bytes:
    """The JSON line (bytes, ASCII, ending in a newline) of ``record``; the fields are the schema's,
    in its order (``pyai.native.transfer_line``: formatted in C, about 0.7 µs)."""
    return native.transfer_line(record, status, sent, client, pid)
