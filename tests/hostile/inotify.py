"""Watch files and directories with Linux inotify: did anything touch them?

The hostile-input tests plant a canary outside the archive prefix and must
prove it is never opened, read, written, moved or deleted.  A stat does not
show up here (inotify does not report it), which is what we want: only an
open, a read, a change or a removal of the canary counts as touching it.
"""

import ctypes
import errno
import os
import struct

IN_ACCESS = 0x001
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_CLOSE_NOWRITE = 0x010
IN_OPEN = 0x020
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_ALL_EVENTS = 0xFFF
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

NAMES = {
    IN_ACCESS: "read",
    IN_MODIFY: "modified",
    IN_ATTRIB: "attributes changed",
    IN_CLOSE_WRITE: "closed after writing",
    IN_CLOSE_NOWRITE: "closed",
    IN_OPEN: "opened",
    IN_MOVED_FROM: "moved away",
    IN_MOVED_TO: "moved in",
    IN_CREATE: "created",
    IN_DELETE: "deleted",
    IN_DELETE_SELF: "deleted",
    IN_MOVE_SELF: "moved",
}
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_libc = ctypes.CDLL(None, use_errno=True)


class Watcher:
    """Every inotify event on the watched paths, as readable ``(path, what)`` pairs."""

    def __init__(self):
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.paths = {}

    def watch(self, path, mask=IN_ALL_EVENTS):
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch", path)
        self.paths[wd] = str(path)

    def events(self):
        """The events since the last call (non-blocking)."""
        found = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            except OSError as exc:  # EINTR is retried by Python
                if exc.errno == errno.EAGAIN:
                    return found
                raise
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + size].rstrip(b"\0").decode(errors="replace")
                offset += _EVENT.size + size
                where = os.path.join(self.paths.get(wd, "?"), name) if name else self.paths.get(wd, "?")
                for bit, what in NAMES.items():
                    if mask & bit:
                        found.append((where, what))

    def close(self):
        os.close(self.fd)
