"""The JSON transfer log: one line per request, what it did and how long it took.

``[ops] transfer_log`` says where: ``-`` (stderr, the default), a file, or
``off``.  A file is opened with O_APPEND by every worker process, and each
line is written with one ``os.write``: the kernel appends each write whole,
so lines of several threads and processes never interleave (and a line stays
under PIPE_BUF, so on a pipe too).  On USR1 (logrotate's ``postrotate``) the
file is opened again by name and the new descriptor is ``dup2``-ed over the
old one, so a write racing the reopen lands in one file or the other, never
on a closed descriptor.  The fields are documented in the README and in
``transfer_log.schema.json`` (shipped beside this module); they are a contract.

Nothing here raises into a request: a line that cannot be written is lost,
counted, and said once in the error log (and once more when writing works again).
"""

import errno
import json
import logging
import os
import time

from pyai.errors import ConfigError

STDERR, OFF = "-", "off"
OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
FILE_MODE = 0o640  # a new log is the service's and its group's (it names clients and tokens)
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transfer_log.schema.json")
# Client-given text is cut to these lengths, so a line stays well under PIPE_BUF (4096)
# even when every character is escaped as \uXXXX: one write is then atomic on a pipe too.
PATH_MAX = 160
FORWARDED_MAX = 128
METHOD_MAX = 32

log = logging.getLogger("gunicorn.error")  # the worker's error log
_json_string = json.encoder.encode_basestring_ascii  # what json.dumps escapes strings with (C)


class TransferLog:
    """Where the lines go: stderr, or a file opened by name (again on ``reopen``)."""

    def __init__(self, target):
        self.target = target  # STDERR or an absolute file name
        self.fd = 2 if target == STDERR else None
        self.failing = False  # the last write failed (said once, until one succeeds)
        self.lost = 0  # lines lost since writing last worked

    def open(self):
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

    def write(self, data):
        """Append ``data`` (one line, bytes); never raises."""
        try:
            if self.fd is None:
                raise OSError(errno.EBADF, "the file could not be opened")
            written = os.write(self.fd, data)
            while written < len(data):  # only on a full disk: the rest follows
                data = data[written:]
                written = os.write(self.fd, data)
        except OSError as exc:
            self.lost += 1
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

    def name(self):
        return "stderr" if self.target == STDERR else self.target


_log = None  # this process's TransferLog, None when off
_pid = 0


def check_config(config):
    """At start-up, in the master: a file the workers could not open stops the service with one line.

    The master creates nothing: the workers do, so a new file is theirs (gunicorn's
    ``user`` setting may have them run as another user than the master).
    """
    target = config.transfer_log
    if target in (STDERR, OFF):
        return
    parent = os.path.dirname(target)
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


def open_log(config):
    """In each worker process, before it serves."""
    global _log, _pid
    _pid = os.getpid()
    _log = None if config.transfer_log == OFF else TransferLog(config.transfer_log)
    if _log is not None:
        _reopen(_log)


def reopen():
    """USR1: open the file again by name (logrotate has moved the old one away)."""
    if _log is not None:
        _reopen(_log)


def _reopen(transfer_log):
    try:
        transfer_log.open()
    except OSError as exc:  # the lines go on to the old file, if there is one
        log.error("cannot open the transfer log %s: %s", transfer_log.target, exc.strerror)


def write(record, status, sent, client):
    """The line of a finished request (see ``pyai.ops.observe.finished``)."""
    transfer_log = _log
    if transfer_log is None:
        return
    try:
        data = line(record, status, sent, client, _pid)
    except Exception:  # noqa: BLE001 - a record that cannot be logged must not fail its request
        log.exception("cannot make the transfer log line of a request")
        return
    transfer_log.write(data)


def line(record, status, sent, client, pid):
    """The JSON line (bytes, ASCII, ending in a newline) of ``record``; the fields are the schema's,
    in its order.  Formatted by hand: json.dumps of the same object costs 4 us, this about half."""
    first_byte, started = record.first_byte, record.started
    return (
        f'{{"time":"{rfc3339(record.wall)}"'
        f',"method":{_text(record.method, METHOD_MAX)}'
        f',"path":{_text(record.path, PATH_MAX)}'
        f',"id":{_text(record.ident, PATH_MAX)}'
        f',"status":{_integer(status)}'
        f',"bytes_sent":{int(sent)}'
        f',"bytes_received":{int(record.bytes_received())}'
        f',"duration":{_seconds(time.monotonic() - started)}'
        f',"ttfb":{_seconds(first_byte - started if first_byte is not None else None)}'
        f',"client":{_text(client[0] if isinstance(client, tuple) and client else None, PATH_MAX)}'
        f',"forwarded_for":{_text(record.forwarded_for, FORWARDED_MAX)}'
        f',"token":{_text(record.token, PATH_MAX)}'
        f',"digest":{_text(record.digest, PATH_MAX)}'
        f',"medium":{_text(record.medium, PATH_MAX)}'
        f',"stage_wait":{_seconds(record.stage_wait)}'
        f',"pid":{int(pid)}}}\n'
    ).encode("ascii")


_second = (None, "")  # the last second formatted, and its text (one gmtime per second, not per line)


def rfc3339(wall):
    """``2024-05-01T12:34:56.789Z``: RFC 3339, UTC, milliseconds."""
    global _second
    seconds = int(wall)
    cached, text = _second
    if cached != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = (seconds, text)
    return f"{text}.{int((wall - seconds) * 1000):03d}Z"


def _text(value, limit):
    """A JSON string (ASCII, escaped as json does), cut to ``limit`` characters; null for None."""
    if value is None:
        return "null"
    return _json_string(value if len(value) <= limit else value[:limit])


def _integer(value):
    return "null" if value is None else str(int(value))


def _seconds(value):
    """Seconds to the microsecond (never negative: a clock read twice cannot go back, but be sure)."""
    return "null" if value is None else f"{max(value, 0.0):.6f}"
