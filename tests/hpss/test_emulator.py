"""The emulator's semantics, through its C API (the calls pyai.hpss_client._hpss binds)."""

import errno
import os
import threading
import time

import pytest
from emulator import emu_cli
from server import wait_until

DISK_ONLY = lambda n: (n, 0, 0, 0, 0)  # noqa: E731
TAPE_ONLY = lambda n: (0, n, 0, 0, 0)  # noqa: E731


def put(hpss, path, data):
    fd = hpss.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    hpss.write_all(fd, data)
    hpss.close(fd)


def read_all(hpss, fd, size=1 << 20):
    buf = hpss.ffi.new("char[]", size)
    out = b""
    while True:
        n = hpss.lib.hpss_Read(fd, buf, size)
        assert n >= 0, n
        if n == 0:
            return out
        out += hpss.ffi.buffer(buf, n)[:]


def purge(hpss, path):
    fd = hpss.open(str(path), os.O_RDWR | os.O_NONBLOCK)
    try:
        return hpss.purge(fd)
    finally:
        hpss.close(fd)


def test_calls_before_login_fail(emu):
    hpss, root = emu
    hpss.lib.hpss_PurgeLoginCred()
    buf = hpss.ffi.new("hpss_stat_t *")
    assert hpss.lib.pyai_stat(str(root).encode(), buf) == -errno.EPERM
    assert hpss.lib.pyai_open(str(root / "x").encode(), os.O_RDONLY, 0) == -errno.EPERM


def test_login_denied_and_needs_a_root(emu, monkeypatch):
    hpss, root = emu
    emu_cli(root, "deny-login")
    assert hpss.lib.pyai_login(b"tester", b"") == -errno.EPERM
    emu_cli(root, "allow-login")
    assert hpss.lib.pyai_login(b"tester", b"") == 0
    assert hpss.lib.pyai_login(b"", b"") == -errno.EINVAL
    monkeypatch.delenv(hpss.EMULATOR_ROOT_ENV)
    assert hpss.lib.pyai_login(b"tester", b"") == -errno.EINVAL


def test_unreadable_keytab_is_refused(emu, tmp_path):
    hpss, root = emu
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    keytab = tmp_path / "keytab"
    keytab.write_text("x")
    keytab.chmod(0)
    assert hpss.lib.pyai_login(b"tester", str(keytab).encode()) == -errno.EACCES


def test_a_forked_child_must_log_in_again(emu):
    hpss, root = emu
    buf = hpss.ffi.new("hpss_stat_t *")
    pid = os.fork()
    if pid == 0:  # the child
        code = hpss.lib.pyai_stat(str(root).encode(), buf)
        os._exit(0 if code == -errno.EPERM else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert hpss.lib.pyai_login(b"tester", b"") == 0  # the fork hook logged the parent out
    assert hpss.lib.pyai_stat(str(root).encode(), buf) == 0


def test_new_data_lands_on_disk_and_lseek_takes_offset_then_whence(emu):
    hpss, root = emu
    data = os.urandom(300_000)
    put(hpss, root / "f", data)
    assert hpss.levels(str(root / "f")) == (len(data), DISK_ONLY(len(data)))
    fd = hpss.open(str(root / "f"), os.O_RDONLY)
    assert hpss.lib.hpss_Lseek(fd, 1234, os.SEEK_SET) == 1234
    assert read_all(hpss, fd) == data[1234:]
    assert hpss.lib.hpss_Lseek(fd, -10, os.SEEK_END) == len(data) - 10
    assert read_all(hpss, fd) == data[-10:]
    hpss.close(fd)


def test_purge_leaves_the_bytes_on_tape_only(emu):
    hpss, root = emu
    put(hpss, root / "f", b"x" * 1000)
    assert purge(hpss, root / "f") == 1000
    assert hpss.levels(str(root / "f"))[1] == TAPE_ONLY(1000)
    assert purge(hpss, root / "f") == 0  # nothing left on disk


def test_nonblocking_open_never_stages(emu):
    hpss, root = emu
    emu_cli(root, "set-stage-delay", "5")
    put(hpss, root / "f", b"abc")
    purge(hpss, root / "f")
    started = time.monotonic()
    fd = hpss.open(str(root / "f"), os.O_RDONLY | os.O_NONBLOCK)
    buf = hpss.ffi.new("char[]", 10)
    assert hpss.lib.hpss_Read(fd, buf, 10) == -errno.EAGAIN
    hpss.close(fd)
    assert time.monotonic() - started < 1
    assert hpss.levels(str(root / "f"))[1] == TAPE_ONLY(3)


def test_blocking_read_of_a_purged_file_stages_first(emu):
    hpss, root = emu
    emu_cli(root, "set-stage-delay", "0.5")
    put(hpss, root / "f", b"hello tape")
    purge(hpss, root / "f")
    fd = hpss.open(str(root / "f"), os.O_RDONLY)
    started = time.monotonic()
    assert read_all(hpss, fd) == b"hello tape"
    assert time.monotonic() - started >= 0.45
    hpss.close(fd)
    assert hpss.levels(str(root / "f"))[1] == (10, 10, 0, 0, 0)  # on disk again, still on tape


def test_synchronous_stage_blocks_until_on_disk(emu):
    hpss, root = emu
    emu_cli(root, "set-stage-delay", "0.4")
    put(hpss, root / "f", b"12345")
    purge(hpss, root / "f")
    fd = hpss.open(str(root / "f"), os.O_RDONLY | os.O_NONBLOCK)
    started = time.monotonic()
    hpss.stage(fd, 5, asynchronous=False)
    assert time.monotonic() - started >= 0.35
    assert hpss.levels(str(root / "f"))[1][0] == 5
    hpss.close(fd)


def test_asynchronous_stage_returns_at_once_and_close_waits(emu):
    hpss, root = emu
    emu_cli(root, "set-stage-delay", "0.6")
    put(hpss, root / "f", b"12345")
    purge(hpss, root / "f")
    fd = hpss.open(str(root / "f"), os.O_RDONLY | os.O_NONBLOCK)
    started = time.monotonic()
    hpss.stage(fd, 5, asynchronous=True)
    assert time.monotonic() - started < 0.3
    # FileGetXAttributes with NO_BLOCK answers while the file moves
    assert hpss.levels(str(root / "f"))[1] == TAPE_ONLY(5)
    hpss.close(fd)
    assert time.monotonic() - started >= 0.55
    assert hpss.levels(str(root / "f"))[1] == (5, 5, 0, 0, 0)


def test_stage_completes_without_anyone_waiting(emu):
    hpss, root = emu
    emu_cli(root, "set-stage-delay", "0.3")
    put(hpss, root / "f", b"12345")
    purge(hpss, root / "f")
    emu_cli(root, "stage", root / "f")  # another process starts it and exits
    assert emu_cli(root, "stages", root / "f").stdout.strip().endswith("stages 1")
    assert wait_until(lambda: hpss.levels(str(root / "f"))[1][0] == 5, timeout=10)


def test_stages_counts_the_stages_queued_and_nothing_else(emu):
    hpss, root = emu
    emu_cli(root, "set-stage-delay", "30")  # still on its way when the test ends
    put(hpss, root / "f", b"12345")

    def count():
        return emu_cli(root, "stages", root / "f").stdout.strip()

    assert count() == f"{root / 'f'}: stages 0"  # no record yet: never purged nor staged
    purge(hpss, root / "f")
    hpss.levels(str(root / "f"))
    assert count().endswith("stages 0")
    emu_cli(root, "stage", root / "f")
    emu_cli(root, "stage", root / "f")  # while the first is on its way: not queued again
    assert count().endswith("stages 1")
    assert hpss.levels(str(root / "f"))[1] == TAPE_ONLY(5)


def test_rewriting_invalidates_the_tape_copy(emu):
    hpss, root = emu
    put(hpss, root / "f", b"old")
    purge(hpss, root / "f")
    fd = hpss.open(str(root / "f"), os.O_WRONLY | os.O_TRUNC)
    hpss.write_all(fd, b"newer")
    hpss.close(fd)
    assert hpss.levels(str(root / "f"))[1] == DISK_ONLY(5)


def test_ping_latency_and_core_server_down(emu):
    hpss, root = emu
    secs, usecs = hpss.ffi.new("uint32_t *"), hpss.ffi.new("uint32_t *")
    assert hpss.lib.pyai_ping(b"site", secs, usecs) == 0
    assert abs(secs[0] - time.time()) < 5
    emu_cli(root, "set-latency", "0.3")
    started = time.monotonic()
    assert hpss.lib.pyai_ping(b"site", secs, usecs) == 0
    assert time.monotonic() - started >= 0.25
    emu_cli(root, "set-latency", "0")
    emu_cli(root, "down")
    code = hpss.lib.pyai_ping(b"site", secs, usecs)
    assert code == hpss.lib.PYAI_HPSS_ECONN == -50  # an HPSS number, not Linux's
    assert hpss.error(code, "PingCore").errno == errno.ECONNREFUSED
    emu_cli(root, "up")
    assert hpss.lib.pyai_ping(b"site", secs, usecs) == 0


def test_codes_above_34_are_hpss_numbers(emu):
    hpss, root = emu
    long_name = str(root / ("n" * 300))
    code = hpss.lib.pyai_open(long_name.encode(), os.O_WRONLY | os.O_CREAT, 0o600)
    assert code == -86
    with pytest.raises(OSError) as info:
        hpss.open(long_name, os.O_WRONLY | os.O_CREAT)
    assert info.value.errno == errno.ENAMETOOLONG
    (root / "d").mkdir()
    (root / "d" / "x").write_bytes(b"")
    assert hpss.lib.pyai_rmdir(str(root / "d").encode()) == -87
    with pytest.raises(OSError) as info:
        hpss.rmdir(str(root / "d"))
    assert info.value.errno == errno.ENOTEMPTY


def test_the_namespace_is_confined_to_its_roots(emu, tmp_path):
    hpss, root = emu
    buf = hpss.ffi.new("hpss_stat_t *")
    assert hpss.lib.pyai_stat(b"/etc/passwd", buf) == -errno.EACCES
    assert hpss.lib.pyai_stat(str(root / ".hpss-emu").encode(), buf) == -errno.EACCES
    assert hpss.lib.pyai_stat(f"{root}/../x".encode(), buf) == -errno.EACCES
    (tmp_path / "outside").write_bytes(b"secret")
    (root / "link").symlink_to(tmp_path / "outside")
    assert hpss.lib.pyai_stat(str(root / "link").encode(), buf) == -errno.EACCES
    assert hpss.lib.pyai_lstat(str(root / "link").encode(), buf) == 0
    assert hpss.listdir(str(root)) == ["link"]  # the state directory is not listed


def test_rename_replaces_link_refuses_unlink_forgets_levels(emu):
    hpss, root = emu
    put(hpss, root / "a", b"aaa")
    put(hpss, root / "b", b"bb")
    purge(hpss, root / "b")
    with pytest.raises(FileExistsError):
        hpss.link(str(root / "a"), str(root / "b"))
    hpss.rename(str(root / "a"), str(root / "b"))
    assert (root / "b").read_bytes() == b"aaa"
    assert hpss.levels(str(root / "b"))[1] == DISK_ONLY(3)
    hpss.unlink(str(root / "b"))
    assert os.listdir(root / ".hpss-emu" / "levels") == []


def test_utime_chmod_mkdir(emu):
    hpss, root = emu
    hpss.mkdir(str(root / "d"))
    with pytest.raises(FileExistsError):
        hpss.mkdir(str(root / "d"))
    put(hpss, root / "d" / "f", b"x")
    hpss.utime(str(root / "d" / "f"), 784111777)
    hpss.chmod(str(root / "d" / "f"), 0o444)
    st = hpss.stat(str(root / "d" / "f"))
    assert st.mtime == 784111777 and st.mode & 0o777 == 0o444 and st.size == 1


def test_many_threads_at_once(emu):
    hpss, root = emu
    errors = []

    def work(n):
        try:
            data = os.urandom(50_000 + n)
            for i in range(5):
                path = root / f"t{n}-{i}"
                put(hpss, path, data)
                fd = hpss.open(str(path), os.O_RDONLY)
                assert read_all(hpss, fd, 4096) == data
                hpss.close(fd)
                assert purge(hpss, path) == len(data)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
