"""The HPSS client API for Python, over the compiled cffi module ``pyai.hpss_client._hpss``.

This module is the only importer of ``pyai.hpss_client._hpss``.  Every call returns what
the C call returned or raises the OSError that ``error`` builds from its
negative return code (HPSS does not report through ``errno``).  cffi releases
the GIL around each call, so a stage, a tape mount or a slow core server
never blocks the other threads.

Logging in is per process (``Session.ensure``): the client library's threads
do not survive ``fork``, so a session is forgotten in a forked child (and the
parent logs out before forking) and each gunicorn worker logs in afresh.
Nothing logs in at import.
"""

import errno
import functools
import os
import sys
import threading
import time
from collections import namedtuple

from pyai.errors import os_error


def _load():
    # libhpss links libtirpc, whose RPC symbols glibc also exports; deep binding
    # makes the library use its own (hpss-api.md 4.6).  Harmless for the emulator.
    # AddressSanitizer refuses deep binding: a sanitized build (make test-sanitized,
    # libasan preloaded) runs on the emulator, which needs none.
    sanitized = "libasan" in os.environ.get("LD_PRELOAD", "")
    flags = sys.getdlopenflags()
    sys.setdlopenflags(os.RTLD_NOW | (0 if sanitized else getattr(os, "RTLD_DEEPBIND", 0)))
    try:
        from pyai.hpss_client import _hpss  # type: ignore[attr-defined]  # built by setup.py (cffi)
    finally:
        sys.setdlopenflags(flags)
    return _hpss.ffi, _hpss.lib


ffi, lib = _load()

EMULATOR = bool(lib.PYAI_HPSS_EMULATOR)
LEVELS = lib.HPSS_MAX_STORAGE_LEVELS
EMULATOR_ROOT_ENV = "PYAI_HPSS_EMU_ROOT"

# HPSS return codes that are not the Linux errno of the same name (HPSS numbers
# them as the old UNIX tables did: ENAMETOOLONG is 86 there, 36 on Linux), by their
# HPSS names; two of them Linux calls otherwise.
_HPSS_NAMES = (
    "EDEADLK ENOLCK EWRPROTECT ECONN ESTALE EMSGSIZE EOPNOTSUPP EBADMSG ETIMEDOUT ENAMETOOLONG ENOTEMPTY EDQUOT"
)
_LINUX_NAMES = {"EWRPROTECT": "EROFS", "ECONN": "ECONNREFUSED"}
_HPSS_ERRNO = {
    abs(code): getattr(errno, _LINUX_NAMES.get(name, name))
    for name in _HPSS_NAMES.split()
    if (code := getattr(lib, f"PYAI_HPSS_{name}"))  # 0: the header has no such name
}


def error(rc, op, path=None):
    """The OSError for the HPSS return code ``rc`` of ``hpss_<op>``: the one place codes become exceptions."""
    code = abs(rc)
    return os_error(_HPSS_ERRNO.get(code, code), f"hpss_{op}", path)


def _check(rc, op, path=None):
    if rc < 0:
        raise error(rc, op, path)
    return rc


Stat = namedtuple("Stat", "size mode mtime ctime ino")


def stat(path):
    buf = ffi.new("hpss_stat_t *")
    _check(lib.pyai_stat(path.encode(), buf), "Stat", path)
    return Stat(buf.st_size, buf.st_mode, float(buf.hpss_st_mtime), float(buf.hpss_st_ctime), buf.st_ino)


def lstat(path):
    """As ``stat``, of a symbolic link itself."""
    buf = ffi.new("hpss_stat_t *")
    _check(lib.pyai_lstat(path.encode(), buf), "Lstat", path)
    return Stat(buf.st_size, buf.st_mode, float(buf.hpss_st_mtime), float(buf.hpss_st_ctime), buf.st_ino)


def levels(path):
    """``(size, bytes at each storage level)`` from FileGetXAttributes, never blocking on a stage."""
    attrs = ffi.new("hpss_xfileattr_t *")
    _check(lib.pyai_xattrs(path.encode(), attrs), "FileGetXAttributes", path)
    return attrs.Attrs.DataLength, tuple(attrs.SCAttrib[i].BytesAtLevel for i in range(LEVELS))


Statfs = namedtuple("Statfs", "bsize blocks bfree bavail")


def statfs(cos):
    """The capacity of the class of service ``cos``: ``(block size, blocks, free blocks, blocks
    available to this user)``, from hpss_Statfs."""
    out = ffi.new("uint64_t[4]")
    _check(lib.pyai_statfs(cos, out, out + 1, out + 2, out + 3), "Statfs")
    return Statfs(out[0], out[1], out[2], out[3])


def open(path, flags, mode=0o600):  # noqa: A001 - the HPSS call's name
    return _check(lib.pyai_open(path.encode(), flags, mode), "Open", path)


def close(fd):
    _check(lib.hpss_Close(fd), "Close")


def read_into(fd, buf, size):
    """Read up to ``size`` bytes into the cffi buffer ``buf``; return the count (0 at the end)."""
    return _check(lib.hpss_Read(fd, buf, size), "Read")


def write_all(fd, data):
    view = memoryview(data)
    while view:
        written = _check(lib.hpss_Write(fd, ffi.from_buffer(view), len(view)), "Write")
        if written == 0:
            raise error(-errno.EIO, "Write")
        view = view[written:]


def seek(fd, offset, whence=os.SEEK_SET):
    return _check(lib.hpss_Lseek(fd, offset, whence), "Lseek")


def stage(fd, length, asynchronous):
    """Copy the file of ``fd`` up to the disk level; with ``asynchronous`` only start it."""
    flags = lib.BFS_STAGE_ALL | (lib.BFS_ASYNCH_CALL if asynchronous else 0)
    _check(lib.hpss_Stage(fd, 0, length, 0, flags), "Stage")


def purge(fd):
    """Drop the disk copy of the file of ``fd`` (it stays on tape); return the bytes purged."""
    purged = ffi.new("u_signed64 *")
    _check(lib.hpss_Purge(fd, 0, 0, 0, lib.BFS_PURGE_ALL, purged), "Purge")
    return purged[0]


def utime(path, mtime):
    _check(lib.pyai_utime(path.encode(), mtime), "Utime", path)


def chmod(path, mode):
    _check(lib.pyai_chmod(path.encode(), mode), "Chmod", path)


def mkdir(path, mode=0o755):
    _check(lib.pyai_mkdir(path.encode(), mode), "Mkdir", path)


def rmdir(path):
    _check(lib.pyai_rmdir(path.encode()), "Rmdir", path)


def rename(old, new):
    _check(lib.pyai_rename(old.encode(), new.encode()), "Rename", new)


def link(existing, new):
    _check(lib.pyai_link(existing.encode(), new.encode()), "Link", new)


def unlink(path):
    _check(lib.pyai_unlink(path.encode()), "Unlink", path)


def listdir(path):
    """The names in the directory ``path``, without ``.`` and ``..``."""
    dirdes = _check(lib.pyai_opendir(path.encode()), "Opendir", path)
    name = ffi.new("char[]", 4096)
    names: list = []
    try:
        while True:
            length = _check(lib.pyai_readdir(dirdes, name, 4096), "Readdir", path)
            if length == 0:
                return names
            entry = ffi.string(name, length).decode(errors="surrogateescape")
            if entry not in (".", ".."):
                names.append(entry)
    finally:
        lib.pyai_closedir(dirdes)


def _keys(keys):
    encoded = [ffi.new("char[]", key.encode("ascii")) for key in keys]
    return encoded, ffi.new("const char *[]", encoded)


def get_user_attrs(path, keys):
    """``{key: value}`` of the user-defined attributes ``keys`` of ``path`` that are set
    (plain text: the XML HPSS wraps a value in is stripped).

    HPSS fails a whole get with ENOENT when one key is missing; then each key
    is asked alone, so a file with only some of them still tells those."""
    keys = list(keys)
    if not keys:
        return {}
    values = _get_attrs(path, keys)
    if values is not None:
        return values
    found = {}
    for key in keys if len(keys) > 1 else ():
        one = _get_attrs(path, [key])
        if one:
            found.update(one)
    return found


def _get_attrs(path, keys):
    """The values of all ``keys``, or None when any is not set (or ``path`` does not exist)."""
    size = lib.PYAI_UDA_VALUE_SIZE
    holders, array = _keys(keys)
    out = ffi.new("char[]", size * len(keys))
    rc = lib.pyai_uda_get(path.encode(), array, len(keys), out, size)
    if rc == -errno.ENOENT:
        return None
    _check(rc, "UserAttrGetAttrs", path)
    raw = ffi.buffer(out)[:]
    return {
        key: raw[i * size : (i + 1) * size].split(b"\0", 1)[0].decode("ascii", "replace") for i, key in enumerate(keys)
    }


def set_user_attrs(path, mapping):
    """Set the user-defined attributes ``{key: value}`` of ``path`` in one call (text values)."""
    if not mapping:
        return
    key_holders, keys = _keys(mapping)
    value_holders = [ffi.new("char[]", str(value).encode("ascii")) for value in mapping.values()]
    values = ffi.new("const char *[]", value_holders)
    _check(lib.pyai_uda_set(path.encode(), keys, values, len(mapping)), "UserAttrSetAttrs", path)


# The emulator's own count of a file's stages, which no HPSS call tells (csrc/hpss_emu/emu.h):
# the library keeps the record's path, format and lock.  It is the library this module is linked
# with (dlopen finds it loaded), holding the root the login set.
@functools.cache
def _emulator():
    import cffi  # the compiled binding needs only its backend: the FFI of this one call waits until it is made

    emu_ffi = cffi.FFI()
    emu_ffi.cdef("int emu_stages(const char *local);")
    return emu_ffi.dlopen(os.path.join(os.path.dirname(os.path.abspath(__file__)), "libhpss_emu.so"))


def emulator_stages(path):
    """How many stages the emulator has queued for the file ``path``, ever (after ``Session.ensure``)."""
    if not EMULATOR:
        raise OSError(errno.EOPNOTSUPP, "only the emulator counts stages", path)
    return _check(_emulator().emu_stages(os.fsencode(path)), "emu_stages", path)


class Session:
    """A login as ``user`` with a keytab, made at most once in each process."""

    def __init__(self, user, keytab, sitename):
        self.user = user
        self.keytab = keytab
        self.sitename = sitename
        self._pid = None
        self._lock = threading.Lock()
        _SESSIONS.append(self)

    def ensure(self):
        """Log in unless this process already has; raise the login's OSError when it fails."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            _check(lib.pyai_login(self.user.encode(), self.keytab.encode()), "SetLoginCred")
            self._pid = os.getpid()

    def logout(self):
        if self._pid == os.getpid():
            lib.hpss_PurgeLoginCred()
            lib.hpss_ClientAPIReset()
        self._pid = None

    def ping(self):
        """Seconds the core server took to answer (LookupRootCS + PingCore), after logging in if needed."""
        self.ensure()
        secs = ffi.new("uint32_t *")
        usecs = ffi.new("uint32_t *")
        started = time.monotonic()
        _check(lib.pyai_ping(self.sitename.encode(), secs, usecs), "PingCore")
        return time.monotonic() - started


_SESSIONS: list = []


def _before_fork():
    # A child cannot use the parent's client threads; log out so neither side
    # is left with a half-shared session (each logs in again when it needs to).
    for session in _SESSIONS:
        session.logout()


def _in_child():
    for session in _SESSIONS:
        session._pid = None
        session._lock = threading.Lock()


os.register_at_fork(before=_before_fork, after_in_child=_in_child)
