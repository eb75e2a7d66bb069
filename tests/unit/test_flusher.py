"""How an upload is made durable: the method chosen per file system, and syncfs shared by a leader."""

import errno
import os
import threading
import time

import pytest

from pyai.backends import flusher
from pyai.backends.dirsync import DirectorySyncer
from pyai.backends.flusher import Choice, FileSystem, Flusher, SharedFlush, choose, file_system
from pyai.errors import ConfigError

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683584k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
45 27 7:0 / /srv/journaled rw,relatime - ext4 /dev/loop0 rw
46 27 253:1 / /srv/x\\040fs rw,relatime shared:7 master:2 - xfs /dev/mapper/vg-data rw,attr2
47 27 0:51 / /srv/nfs rw,relatime - nfs4 host:/export rw,vers=4.2
48 27 0:52 /sub /srv/btrfs rw,relatime - btrfs /dev/vdb rw,space_cache=v2
49 27 0:53 / /srv/lustre rw - lustre 10.0.0.1@tcp:/fs rw
50 27 7:1 / /srv/nojournal rw,relatime - ext4 /dev/loop1 rw
"""
DEVS = {"/": (254, 0), "/srv/journaled": (7, 0), "/srv/x fs": (253, 1), "/srv/nfs": (0, 51), "/dev/shm": (0, 23)}
DEVS.update({"/srv/btrfs": (0, 52), "/srv/lustre": (0, 53), "/srv/nojournal": (7, 1)})


@pytest.fixture
def kernel(tmp_path):
    """A fake /proc/fs and /sys/dev/block: vda and loop1 without a journal, loop0 with one."""
    proc = tmp_path / "proc_fs"
    sysblock = tmp_path / "sys_dev_block"
    sysblock.mkdir()
    for name, lines in {"vda": "rw\nbarrier\n", "loop0": "rw\ndata=ordered\n", "loop1": "rw\n"}.items():
        (proc / "ext4" / name).mkdir(parents=True)
        (proc / "ext4" / name / "options").write_text(lines)
    (proc / "jbd2" / "loop0-8").mkdir(parents=True)
    for majmin, name in {"254:0": "vda", "7:0": "loop0", "7:1": "loop1", "253:1": "dm-1"}.items():
        os.symlink(f"../../devices/virtual/block/{name}", sysblock / majmin)

    def fs_of(path, mount):
        return file_system(
            path, dev=os.makedev(*DEVS[mount]), mountinfo=MOUNTINFO, proc_fs=str(proc), sys_dev_block=str(sysblock)
        )

    fs_of.proc = proc
    return fs_of


@pytest.mark.parametrize(
    "mount, fstype, journal, auto",
    [
        ("/", "ext4", False, "fsync"),
        ("/srv/journaled", "ext4", True, "journal"),
        ("/srv/nojournal", "ext4", False, "fsync"),
        ("/srv/x fs", "xfs", None, "journal"),
        ("/srv/nfs", "nfs4", None, "fsync"),
        ("/srv/btrfs", "btrfs", None, "fsync"),
        ("/srv/lustre", "lustre", None, "fsync"),
        ("/dev/shm", "tmpfs", None, "fsync"),
    ],
)
def test_auto_picks_journal_only_where_a_journal_commit_covers_written_back_data(kernel, mount, fstype, journal, auto):
    fs = kernel(os.path.join(mount, "archive"), mount)
    assert (fs.fstype, fs.journal, fs.mount_point) == (fstype, journal, mount)
    assert choose("auto", fs).method == auto
    assert choose("fsync", fs).method == "fsync"  # sound everywhere


def test_the_device_name_comes_from_sys_dev_block_else_from_the_source(kernel):
    assert kernel("/srv/x fs", "/srv/x fs").device == "dm-1"  # not "vg-data": /proc/fs/ext4 names dm-1
    assert kernel("/srv/journaled/a/b", "/srv/journaled").device == "loop0"


def test_a_jbd2_directory_alone_says_there_is_a_journal(kernel):
    (kernel.proc / "ext4" / "loop1" / "options").write_text("rw\n")
    (kernel.proc / "jbd2" / "loop1-8").mkdir()
    assert kernel("/srv/nojournal", "/srv/nojournal").journal is True


def test_an_ext4_without_proc_entries_has_an_unknown_journal_and_gets_fsync(kernel, tmp_path):
    fs = file_system("/", dev=os.makedev(254, 0), mountinfo=MOUNTINFO, proc_fs=str(tmp_path / "none"))
    assert (fs.fstype, fs.journal) == ("ext4", None)
    assert choose("auto", fs).method == "fsync"
    with pytest.raises(ConfigError):
        choose("journal", fs)
    assert choose("syncfs", fs).rounds == 2  # not known to journal: syncfs's late metadata writes


def test_a_device_no_mount_names_falls_back_to_the_longest_mount_point_above(kernel):
    # a btrfs subvolume below the mount has its own anonymous st_dev
    fs = file_system("/srv/btrfs/vol/archive", dev=os.makedev(0, 99), mountinfo=MOUNTINFO)
    assert (fs.fstype, fs.mount_point) == ("btrfs", "/srv/btrfs")
    nothing = file_system("/x", dev=os.makedev(0, 99), mountinfo="garbage\n")
    assert nothing.fstype == "" and choose("auto", nothing).method == "fsync"
    with pytest.raises(ConfigError, match="unknown file system"):
        choose("syncfs", nothing)


@pytest.mark.parametrize("mount", ["/", "/srv/nojournal", "/srv/nfs", "/srv/btrfs", "/srv/lustre", "/dev/shm"])
def test_a_forced_journal_is_refused_where_it_is_not_sound(kernel, mount):
    with pytest.raises(ConfigError, match="durability = journal is not sound on .*use auto or fsync"):
        choose("journal", kernel(mount, mount))


@pytest.mark.parametrize("mount", ["/srv/nfs", "/srv/lustre", "/dev/shm"])
def test_a_forced_syncfs_is_refused_off_local_ext4_xfs_btrfs(kernel, mount):
    with pytest.raises(ConfigError, match="durability = syncfs is not sound"):
        choose("syncfs", kernel(mount, mount))


@pytest.mark.parametrize("mount, rounds", [("/srv/journaled", 1), ("/srv/x fs", 1), ("/srv/btrfs", 1), ("/", 2)])
def test_syncfs_waits_two_calls_per_stage_on_ext4_without_a_journal(kernel, mount, rounds):
    assert choose("syncfs", kernel(mount, mount)).rounds == rounds


def test_the_real_prefix_is_described_and_a_bad_name_refused(tmp_path):
    fs = file_system(str(tmp_path))
    assert fs.fstype  # this machine's /proc/self/mountinfo names it
    assert choose("auto", fs).method in ("fsync", "journal")
    with pytest.raises(ConfigError):
        choose("fastest", fs)


def test_files_on_another_file_system_than_the_prefixs_get_fsync(tmp_path):
    fs = FileSystem("ext4", "/", "/dev/vda", "vda", False)
    f = Flusher(str(tmp_path), "syncfs", DirectorySyncer(), fs=fs)
    assert f.for_dev(os.stat(tmp_path).st_dev).name == "syncfs"
    assert f.for_dev(os.stat(tmp_path).st_dev + 1).name == "fsync"
    assert Flusher(str(tmp_path), "fsync", DirectorySyncer(), fs=fs).for_dev(os.stat(tmp_path).st_dev).name == "fsync"


def test_the_config_offers_exactly_the_methods():
    from pyai.config import load

    assert load({"durability": "SyncFS"}, environ={}, prepare=False).durability == "syncfs"
    assert load(environ={}, prepare=False).durability == "auto"
    with pytest.raises(ConfigError, match="PAI_DURABILITY"):
        load(environ={"PAI_DURABILITY": "none"}, prepare=False)
    assert set(flusher.METHODS) == {"auto", "fsync", "journal", "syncfs"}
    assert isinstance(choose("fsync", FileSystem("", "", "", "", None)), Choice)


# -- SharedFlush --------------------------------------------------------------------


class FakeFlush:
    """A flush primitive that records which calls started and ended; call ``block`` waits for ``release``."""

    def __init__(self, block=None, fail=(), delay=0.0):
        self.delay = delay  # long enough for other callers to queue up behind a call
        self.lock = threading.Lock()
        self.started = 0
        self.ended = []  # call numbers (from 0), in the order they ended
        self.running = 0
        self.overlapped = False
        self.block = block
        self.release = threading.Event()
        self.fail = set(fail)

    def __call__(self):
        with self.lock:
            index = self.started
            self.started += 1
            self.running += 1
            self.overlapped |= self.running > 1
        if index == self.block:
            assert self.release.wait(10)
        if self.delay:
            time.sleep(self.delay)
        try:
            if index in self.fail:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        finally:
            with self.lock:
                self.running -= 1
                self.ended.append(index)

    def arrival(self):
        with self.lock:
            return self.started  # the first call that may count for one arriving now

    def covered(self, arrival, rounds):
        """Whether ``rounds`` consecutive calls from the first one started after ``arrival`` have ended."""
        with self.lock:
            return all(i in self.ended for i in range(arrival, arrival + rounds))


def wait_for(predicate):
    done = threading.Event()
    for _ in range(1000):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition never came true")


def start(target, *args):
    thread = threading.Thread(target=target, args=args)
    thread.start()
    return thread


class Outcome:
    def __init__(self):
        self.lock = threading.Lock()
        self.bad = []  # arrivals that returned uncovered
        self.errors = []
        self.ok = 0

    def run(self, shared, fake, rounds, arrived=None):
        arrival = fake.arrival()
        if arrived is not None:
            arrived.wait()
        try:
            shared.wait()
        except OSError as exc:
            with self.lock:
                self.errors.append(exc)
            return
        covered = fake.covered(arrival, rounds)
        with self.lock:
            self.ok += 1
            if not covered:
                self.bad.append(arrival)


@pytest.mark.parametrize("rounds", [1, 2])
def test_waiters_that_arrive_during_a_call_share_the_next_ones_never_that_one(rounds):
    fake = FakeFlush(block=0)
    shared = SharedFlush(fake, rounds)
    outcome = Outcome()
    leader = start(outcome.run, shared, fake, rounds)
    wait_for(lambda: fake.started == 1)  # call 0 runs (blocked) before the others arrive
    followers = [start(outcome.run, shared, fake, rounds) for _ in range(12)]
    wait_for(lambda: len(shared._waiting) == 13)
    fake.release.set()
    for thread in [leader] + followers:
        thread.join()
    assert outcome.bad == [] and outcome.errors == [] and outcome.ok == 13
    # call 0 served the first; the 12 that came during it shared the next `rounds` calls
    assert fake.started == 1 + rounds
    assert not fake.overlapped
    assert shared._waiting == []


@pytest.mark.parametrize("rounds", [1, 2])
def test_many_threads_many_rounds_far_fewer_calls_and_every_return_covered(rounds):
    threads, per_thread = 16, 30
    fake = FakeFlush(delay=0.005)
    shared = SharedFlush(fake, rounds)
    outcome = Outcome()
    barrier = threading.Barrier(threads)

    def caller():
        barrier.wait()
        for _ in range(per_thread):
            outcome.run(shared, fake, rounds)

    workers = [start(caller) for _ in range(threads)]
    for thread in workers:
        thread.join()
    assert outcome.bad == [] and outcome.errors == []
    assert outcome.ok == threads * per_thread
    assert fake.started < threads * per_thread * rounds / 4  # a call serves most of the 16
    assert not fake.overlapped


def test_a_lone_waiter_gets_its_own_call_each_time():
    fake = FakeFlush()
    shared = SharedFlush(fake, 1)
    for n in range(1, 4):
        shared.wait()
        assert fake.started == n


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_failed_call_fails_every_waiter_that_counted_on_it_and_nobody_else(rounds):
    fake = FakeFlush(block=0, fail={1})
    shared = SharedFlush(fake, rounds)
    outcome = Outcome()
    leader = start(outcome.run, shared, fake, rounds)
    wait_for(lambda: fake.started == 1)
    followers = [start(outcome.run, shared, fake, rounds) for _ in range(8)]
    wait_for(lambda: len(shared._waiting) == 9)
    fake.release.set()
    for thread in [leader] + followers:
        thread.join()
    # the leader's rounds: calls 0.. rounds-1; with rounds 2 it counted on call 1 too
    failed = 8 + (1 if rounds == 2 else 0)
    assert len(outcome.errors) == failed, outcome.errors
    assert all(exc.errno == errno.EIO for exc in outcome.errors)
    assert len({id(exc) for exc in outcome.errors}) == failed  # one exception object per thread
    assert outcome.ok == 9 - failed and outcome.bad == []
    assert fake.started == 2  # failing waiters stop at once: nobody ran a call for nothing
    shared.wait()  # a later waiter is not failed by an old error
    assert fake.started == 2 + rounds


def test_an_error_that_is_no_oserror_reaches_the_waiters_too():
    def flush():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        SharedFlush(flush).wait()


# -- the posix writer with a method --------------------------------------------------


def _backend(tmp_path, method):
    from pyai.backends.posix import PosixBackend
    from pyai.config import load

    prefix = tmp_path / "prefix"
    prefix.mkdir()
    return PosixBackend(load({"prefix": str(prefix), "durability": method}, environ={}, prepare=False)), prefix


def _syncfs_failing(monkeypatch, calls, fail_from):
    """pyai.native.syncfs, failing with EIO from call ``fail_from`` on (and recording every call)."""
    real = flusher.fileio.syncfs

    def syncfs(fd):
        calls.append(fd)
        if len(calls) >= fail_from:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(flusher.fileio, "syncfs", syncfs)


def test_syncfs_failing_after_the_rename_is_stored_not_durable_and_a_retry_confirms(tmp_path, monkeypatch):
    from pyai.errors import StoredNotDurable

    try:
        backend, prefix = _backend(tmp_path, "syncfs")
    except ConfigError as exc:
        pytest.skip(f"syncfs is not sound here: {exc}")
    rounds = backend.flusher.choice.rounds
    calls = []
    _syncfs_failing(monkeypatch, calls, fail_from=rounds + 1)  # the stage before the rename works
    writer = backend.create(str(prefix / "a"))
    writer.write(b"x" * 100)
    with pytest.raises(StoredNotDurable):
        writer.commit(1_000_000.0)
    assert (prefix / "a").read_bytes() == b"x" * 100  # stored: only its durability is unknown
    assert len(calls) == rounds + 3  # the stage after the rename was tried three times
    monkeypatch.setattr(flusher.fileio, "syncfs", lambda fd: None)
    backend.confirm_durable(str(prefix / "a"))  # an identical retry's 201


def test_syncfs_failing_before_the_rename_stores_nothing(tmp_path, monkeypatch):
    try:
        backend, prefix = _backend(tmp_path, "syncfs")
    except ConfigError as exc:
        pytest.skip(f"syncfs is not sound here: {exc}")
    calls = []
    _syncfs_failing(monkeypatch, calls, fail_from=1)
    writer = backend.create(str(prefix / "b"))
    writer.write(b"y" * 100)
    with pytest.raises(OSError) as caught:
        writer.commit(1_000_000.0)
    assert caught.value.errno == errno.EIO
    assert os.listdir(prefix) == []  # neither the id nor a temporary file


def test_journal_writes_back_before_the_rename_and_fsyncs_no_file(tmp_path, monkeypatch):
    from pyai.backends.posix import PosixBackend
    from pyai.config import load

    prefix = tmp_path / "prefix"
    prefix.mkdir()
    config = load({"prefix": str(prefix), "durability": "fsync"}, environ={}, prepare=False)
    backend = PosixBackend(config)
    journaled = FileSystem("ext4", "/", "/dev/x", "x", True)
    backend.flusher = Flusher(str(prefix), "journal", backend.syncer, fs=journaled)
    events = []
    monkeypatch.setattr(flusher.fileio, "write_back", lambda fd: events.append(("write_back", os.listdir(prefix))))
    monkeypatch.setattr(flusher.fileio, "fsync", lambda fd: events.append(("fsync", fd)))
    backend.syncer._fsync_dir = lambda path: events.append(("fsync_dir", os.listdir(prefix)))
    writer = backend.create(str(prefix / "c"))
    writer.write(b"z" * 100)
    writer.commit(1_000_000.0)
    assert [e[0] for e in events] == ["write_back", "fsync_dir"]
    assert "c" not in events[0][1] and "c" in events[1][1]  # written back before the rename, dir synced after
    assert (prefix / "c").read_bytes() == b"z" * 100
