"""How an upload is made durable: the flushes between its last byte and its 201.

A PUT writes a temporary file, publishes it with a rename, and answers 201 only
when, after a crash at any moment, the id is either absent or present with all
its bytes, and after the 201 present.  Three methods, chosen per file system
(``[archive] durability``):

``fsync`` (sound everywhere; the fallback): fsync(file) completes before the
rename; an fsync of the directory, shared by the uploads that published into it
meanwhile (``DirectorySyncer``), completes after the rename and before the 201.
Two device flushes per upload, or per group for the directory's.

``journal`` (ext4 with a jbd2 journal, XFS): the file's pages are written back
and waited for (sync_file_range WAIT_BEFORE|WRITE|WAIT_AFTER) before its
mtime, mode and xattr are set and it is renamed; then the shared directory
fsync.  Sound because:

1. writeback allocates the blocks and updates the size (and converts unwritten
   extents, before it reports the pages written) in journal handles that end
   before the rename starts, so in the rename's transaction or an earlier one;
   mtime, mode and xattr likewise;
2. fsync(dir) commits the transaction of the rename, and transactions commit in
   order, so every earlier one is committed too;
3. the commit record is written with a cache flush before it and FUA (jbd2 with
   barriers; XFS's log force, which also flushes the data device when the log
   is external), so the data writes that completed before the rename are on
   stable storage when it is: if the name survives a crash, so do its bytes.

One device flush per group instead of two per upload.  (Unsound without a
journal: an ext4 without one flushes nothing in order.)

``syncfs`` (local file systems whose syncfs writes back all data and metadata
and flushes the device: ext4, XFS, btrfs): after the data and metadata are
written, wait for a syncfs that starts after that and completes before the
rename; after the rename, for one more that completes before the 201.  One
flusher thread at a time (``SharedFlush``) serves every upload waiting when its
call starts, at either stage, so under load the calls are pipelined and shared.
On ext4 without a journal, syncfs writes the inode and directory blocks from
the block device's cache *after* its device flush (fs/sync.c:
sync_filesystem), so there each stage waits for two consecutive calls (the
second's flush covers the first's late writes).  Drawback: syncfs writes back
everything dirty on the file system, other writers' data too, so its latency
depends on theirs; and a writeback error anywhere on it fails the uploads
waiting then (never a silent success).

``auto``: ``journal`` where it is sound, else ``fsync``.  Any other file system
(NFS, Lustre, GPFS, CephFS, FUSE, btrfs, ZFS, tmpfs, unknown) gets ``fsync``.
Files on another file system than the prefix's (a mount below it) get
``fsync`` whatever the method.
"""

import dataclasses
import glob
import logging
import os
import threading
from typing import Callable, List, Optional

from pyai import native as fileio
from pyai.backends.dirsync import DirectorySyncer
from pyai.config import DURABILITY as METHODS
from pyai.errors import ConfigError, os_error

EXT = ("ext2", "ext3", "ext4")  # all mounted by the ext4 driver, reported under /proc/fs/ext4
SYNCFS_SOUND = EXT + ("xfs", "btrfs")
log = logging.getLogger("pyai")


@dataclasses.dataclass(frozen=True)
class FileSystem:
    """What the kernel says of the file system holding a path."""

    fstype: str  # as in /proc/self/mountinfo; "" when no mount matched
    mount_point: str
    source: str
    device: str  # the kernel's name of its block device ("loop0", "dm-0"), "" when unknown
    journal: Optional[bool]  # ext*: whether it has a jbd2 journal; None when not known or not ext

    def describe(self) -> str:
        if not self.fstype:
            return "an unknown file system"
        what = self.fstype
        if self.fstype in EXT:
            what += {True: " with a journal", False: " without a journal", None: " (journal unknown)"}[self.journal]
        return f"{what} ({self.source} on {self.mount_point})"


@dataclasses.dataclass(frozen=True)
class Choice:
    method: str  # fsync, journal or syncfs
    reason: str
    rounds: int = 1  # syncfs: consecutive calls each stage waits for


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (space, tab, newline, backslash)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _mounts(mountinfo: str):
    """(major:minor, mount point, fstype, source) per line of a mountinfo text."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 3:
            continue
        yield fields[2], _unescape(fields[4]), fields[sep + 1], _unescape(fields[sep + 2])


def _within(path: str, mount_point: str) -> bool:
    return mount_point == "/" or path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def file_system(
    path: str,
    *,
    dev: Optional[int] = None,
    mountinfo: Optional[str] = None,
    proc_fs: str = "/proc/fs",
    sys_dev_block: str = "/sys/dev/block",
) -> FileSystem:
    """The file system of ``path``: its mount found by st_dev (or, failing that, the
    longest mount point above it, e.g. a btrfs subvolume), and for ext* whether it has
    a journal (a ``data=`` line in /proc/fs/ext4/<dev>/options, or /proc/fs/jbd2/<dev>-*)."""
    path = os.path.realpath(path)
    if dev is None:
        dev = os.stat(path).st_dev
    if mountinfo is None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            mountinfo = handle.read()
    majmin = f"{os.major(dev)}:{os.minor(dev)}"
    mounts = list(_mounts(mountinfo))
    by_dev = [m for m in mounts if m[0] == majmin]
    above = [m for m in (by_dev or mounts) if _within(path, m[1])]
    candidates = above or by_dev
    if not candidates:
        return FileSystem("", "", "", "", None)
    found, mount_point, fstype, source = max(candidates, key=lambda m: len(m[1]))
    device = ""
    names = []
    try:
        device = os.path.basename(os.readlink(os.path.join(sys_dev_block, found)))
        names.append(device)
    except OSError:
        pass
    if source.startswith("/dev/"):
        names.append(os.path.basename(source))
    journal = None
    if fstype in EXT:
        journal = _ext_journal(names, proc_fs)
    return FileSystem(fstype, mount_point, source, device or (names[0] if names else ""), journal)


def _ext_journal(names: List[str], proc_fs: str) -> Optional[bool]:
    for name in names:
        options = os.path.join(proc_fs, "ext4", name, "options")
        try:
            with open(options, encoding="utf-8") as handle:
                lines = handle.read().split()
        except OSError:
            continue
        return any(line.startswith("data=") for line in lines) or bool(
            glob.glob(os.path.join(proc_fs, "jbd2", name + "-*"))
        )
    return None


# File systems whose flushes return at once: nothing to hand over a thread's turn for.
IN_MEMORY = frozenset({"tmpfs", "ramfs"})


def choose(requested: str, fs: FileSystem) -> Choice:
    """The method for ``fs``; ConfigError when a forced one is not sound there.

    A forced method that is not sound is refused rather than warned about: the
    setting only trades speed, ``fsync`` is always correct, and a warning in a log
    is easily missed while every 201 after it would promise what it cannot."""
    where = fs.describe()
    journal_ok = (fs.fstype in EXT and fs.journal is True) or fs.fstype == "xfs"
    if requested == "auto":
        if journal_ok:
            return Choice("journal", f"auto: {where} commits data written back before a rename with the rename")
        return Choice("fsync", f"auto: fsync, the method sound everywhere, on {where}")
    if requested == "fsync":
        return Choice("fsync", f"configured, on {where}")
    if requested == "journal":
        if not journal_ok:
            raise ConfigError(
                f"durability = journal is not sound on {where}: it needs ext4 with a journal or xfs (use auto or fsync)"
            )
        return Choice("journal", f"configured, on {where}")
    if requested == "syncfs":
        if fs.fstype not in SYNCFS_SOUND:
            raise ConfigError(
                f"durability = syncfs is not sound on {where}: it needs a local ext4, xfs or btrfs (use auto or fsync)"
            )
        rounds = 2 if fs.fstype in EXT and fs.journal is not True else 1
        note = "; two syncfs per stage (it writes block-device metadata after its flush)" if rounds == 2 else ""
        return Choice("syncfs", f"configured, on {where}{note}", rounds)
    raise ConfigError(f"durability = {requested!r} is not one of {', '.join(METHODS)}")


class _Waiter:
    __slots__ = ("target", "error")

    def __init__(self, target: int):
        self.target = target  # the call whose end releases it
        self.error: Optional[BaseException] = None


class SharedFlush:
    """``wait()`` returns once ``rounds`` consecutive calls of ``flush``, the first
    started after ``wait`` was called, have completed; a failed one fails every
    waiter that counted on it.  Calls run one at a time, by one of the waiting
    threads (the leader); the others wait for them and share them."""

    def __init__(self, flush: Callable[[], None], rounds: int = 1):
        self._flush = flush
        self._rounds = rounds
        self._cond = threading.Condition(threading.Lock())
        self._started = 0  # calls started so far, numbered from 1; they run in order
        self._finished = 0  # the number of the last call that ended
        self._running = False
        self._waiting: List[_Waiter] = []

    def wait(self) -> None:
        with self._cond:
            # call self._started (if running) began before now: the next ones count
            waiter = _Waiter(self._started + self._rounds)
            self._waiting.append(waiter)
            try:
                while self._finished < waiter.target and waiter.error is None:
                    if self._running:
                        self._cond.wait()
                    else:
                        self._lead()
            finally:
                self._waiting.remove(waiter)
        if waiter.error is not None:
            error = waiter.error
            if isinstance(error, OSError) and error.errno:  # a copy per thread: tracebacks are not shared
                raise os_error(error.errno, getattr(error, "op", "flush")) from None
            raise error

    def _lead(self) -> None:
        """Run the next call (the condition's lock is held on entry and exit, not during it)."""
        self._running = True
        self._started += 1
        number = self._started
        error = None
        self._cond.release()
        try:
            self._flush()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter that counted on this call
            error = exc
        finally:
            self._cond.acquire()
            self._running = False
            self._finished = number
            if error is not None:
                for waiter in self._waiting:
                    if waiter.target - self._rounds < number <= waiter.target and waiter.error is None:
                        waiter.error = error
            self._cond.notify_all()


class Steps:
    """The fsync method's steps of one commit (the others override some)."""

    name = "fsync"

    def __init__(self, syncer: DirectorySyncer):
        self.syncer = syncer

    def written(self, fd: int) -> None:
        """All bytes are written; metadata (xattr, mtime, mode) comes next."""

    def before_publish(self, fd: int) -> None:
        """Data and metadata are set; returns once the rename may come."""
        fileio.fsync(fd)

    def after_publish(self, directory: str) -> None:
        """After the rename into ``directory``: returns once it is durable."""
        self.syncer.synced(directory)


class JournalSteps(Steps):
    name = "journal"

    def written(self, fd: int) -> None:
        fileio.write_back(fd)

    def before_publish(self, fd: int) -> None:
        """Nothing: the directory fsync's journal commit makes the written-back data durable."""


class SyncfsSteps(Steps):
    name = "syncfs"

    def __init__(self, syncer: DirectorySyncer, path: str, rounds: int):
        super().__init__(syncer)
        self.path = path
        self._fd = -1  # opened at the first flush, so a forking master holds none
        self.shared = SharedFlush(self._syncfs, rounds)

    def _syncfs(self) -> None:
        if self._fd < 0:  # only one call runs at a time
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fileio.syncfs(self._fd)

    def before_publish(self, fd: int) -> None:
        self.shared.wait()

    def after_publish(self, directory: str) -> None:
        self.shared.wait()


class Flusher:
    """The method for uploads under ``prefix``, chosen once (see ``choose``).

    Chosen at construction, or, when the prefix is missing then (moved away, not
    mounted: a worker may start while it is), at the first upload that finds it
    back; the uploads before fail on the missing prefix as any request does."""

    def __init__(self, prefix: str, requested: str, syncer: DirectorySyncer, fs: Optional[FileSystem] = None):
        self.prefix, self.requested, self.syncer = prefix, requested, syncer
        self.fsync = Steps(syncer)
        self.choice: Optional[Choice] = None
        self._lock = threading.Lock()
        try:
            self._choose(fs)
        except FileNotFoundError:
            pass

    def _choose(self, fs: Optional[FileSystem]) -> None:
        fs = fs or file_system(self.prefix)
        choice = choose(self.requested, fs)
        self.fs, self.dev = fs, os.stat(self.prefix).st_dev
        if choice.method == "journal":
            self.steps: Steps = JournalSteps(self.syncer)
        elif choice.method == "syncfs":
            self.steps = SyncfsSteps(self.syncer, self.prefix, choice.rounds)
        else:
            self.steps = self.fsync
        self.choice = choice
        announce(self.prefix, choice)

    def flush_waits(self, dev: int) -> bool:
        """Whether flushing a file on device ``dev`` waits for a device (not on tmpfs or ramfs)."""
        return not (dev == self.dev and self.fs.fstype in IN_MEMORY)

    def for_dev(self, dev: int) -> Steps:
        """The steps for a file on device ``dev``: fsync's unless it is the prefix's file system."""
        if self.choice is None:
            with self._lock:
                if self.choice is None:
                    self._choose(None)
        return self.steps if dev == self.dev else self.fsync


def announce(prefix: str, choice: Choice) -> None:
    """Log the choice once per process, where an operator sees it (gunicorn's error log when pyai's has no handler)."""
    target = log if log.hasHandlers() else logging.getLogger("gunicorn.error")
    target.info("durability of uploads under %s: %s (%s)", prefix, choice.method, choice.reason)
