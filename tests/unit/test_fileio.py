"""Tests of the I/O primitives, run against both pyai.native._cimpl (C) and pyai.native._pyimpl (Python).

The C extension must be built (``setup.py build_ext --inplace``): its tests
fail, not skip, when it is missing.
"""

import contextlib
import errno
import fcntl
import importlib
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from server import wait_until

from .peers import Sender
from .writeback import WRITTEN_BEHIND, sync_file_range_calls

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


@pytest.fixture(params=["socketpair", "tcp"])
def conn(request):
    """(receiving socket, sending socket), connected."""
    if request.param == "socketpair":
        rx, tx = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            tx = socket.create_connection(listener.getsockname())
            rx, _ = listener.accept()
    with rx, tx:
        yield rx, tx


@contextlib.contextmanager
def watchdog(tx, seconds=10):
    """Ends the stream after ``seconds``, so a receive that ignores its deadline fails, not hangs."""
    timer = threading.Timer(seconds, tx.shutdown, (socket.SHUT_WR,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# ---- recv_to_file ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 + 1, 5 * MiB])
def test_recv_exact_and_stops_at_nbytes(fio, conn, out, size):
    rx, tx = conn
    fd, read_back = out
    body = os.urandom(size)
    sender = Sender(tx, body + b"NEXT REQUEST")
    if size < 100_000:
        sender.join()  # all queued on the socket: reading too much would take the next request
    assert fio.recv_to_file(rx.fileno(), fd, size, 10) == size
    sender.finish()
    assert read_back() == body
    # what follows the body is still on the socket, for the next request
    rx.settimeout(5)
    assert rx.recv(100) == b"NEXT REQUEST"


# Sizes around the pieces the C path hashes (256 KiB), its buffer (1 MiB) and odd ones.
HASHED_SIZES = [0, 1, 4095, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, MiB + 7, 3 * MiB + 12345]


@pytest.mark.parametrize("size", HASHED_SIZES)
def test_recv_hashes_what_it_writes(fio, conn, out, size):
    import hashlib

    rx, tx = conn
    fd, read_back = out
    body = os.urandom(size)
    sender = Sender(tx, body[: size // 3], body[size // 3 :], b"NEXT REQUEST")
    hashers = [hashlib.sha256(), hashlib.md5(), hashlib.sha512()]
    assert fio.recv_to_file(rx.fileno(), fd, size, 10, hashers) == size
    sender.finish()
    assert read_back() == body
    assert [h.digest() for h in hashers] == [hashlib.new(h.name, body).digest() for h in hashers]
    rx.settimeout(5)
    assert rx.recv(100) == b"NEXT REQUEST"  # hashing does not read past the body either


# 100 kB is hashed in line; 3 MiB by a second thread (C: HASH_BESIDE_FROM), which must stop the receive too.
@pytest.mark.parametrize("size", [100_000, 3 * MiB])
def test_recv_hasher_failure_stops_the_receive(fio, conn, out, size):
    class Broken:
        def update(self, data):
            raise MemoryError("hasher broke")

    rx, tx = conn
    fd, _ = out
    sender = Sender(tx, os.urandom(size))
    with pytest.raises(MemoryError, match="hasher broke"):
        fio.recv_to_file(rx.fileno(), fd, size, 10, [Broken()])
    rx.close()  # the rest of the body is not wanted: the sender gets an error instead of waiting
    sender.join(10)
    assert not sender.is_alive()


def test_recv_hashes_a_short_body_up_to_its_end(fio, conn, out):
    import hashlib

    rx, tx = conn
    fd, read_back = out
    body = os.urandom(2 * MiB + 3)
    sender = Sender(tx, body, eof=True)
    hasher = hashlib.sha256()
    assert fio.recv_to_file(rx.fileno(), fd, 5 * MiB, 10, [hasher]) == len(body)
    sender.finish()
    assert read_back() == body
    assert hasher.digest() == hashlib.sha256(body).digest()


def test_recv_eof_returns_short_count(fio, conn, out):
    rx, tx = conn
    fd, read_back = out
    body = os.urandom(100_000)
    sender = Sender(tx, body, eof=True)
    assert fio.recv_to_file(rx.fileno(), fd, 300_000, 10) == len(body)
    sender.finish()
    assert read_back() == body


def test_recv_timeout(fio, conn, out):
    rx, tx = conn
    fd, read_back = out
    tx.sendall(b"abc")
    # The watchdog would end the stream (EOF, a short count) if the deadline were ignored.
    with watchdog(tx), pytest.raises(TimeoutError) as info:
        fio.recv_to_file(rx.fileno(), fd, 10, 0.3)
    assert info.value.errno == errno.ETIMEDOUT and info.value.op == "receive"
    assert read_back() == b"abc"  # what came before the timeout was written


def test_recv_timeout_is_per_wait_not_total(fio, conn, out):
    rx, tx = conn
    fd, read_back = out
    parts = [os.urandom(1000) for _ in range(8)]
    sender = Sender(tx, *parts, pause=0.1)  # 0.8 s in all, never 0.5 s of silence
    assert fio.recv_to_file(rx.fileno(), fd, 8000, 0.5) == 8000
    sender.finish()
    assert read_back() == b"".join(parts)


@pytest.mark.parametrize("blocking", [False, True])
def test_recv_keeps_socket_mode(fio, conn, out, blocking):
    rx, tx = conn
    fd, read_back = out
    rx.setblocking(blocking)
    body = os.urandom(2 * MiB + 3)
    sender = Sender(tx, body[:1000], body[1000:], pause=0.05)  # so the socket runs dry
    assert fio.recv_to_file(rx.fileno(), fd, len(body), 10) == len(body)
    sender.finish()
    assert read_back() == body
    assert rx.getblocking() is blocking


def test_recv_at_file_offset(fio, conn, out):
    rx, tx = conn
    fd, read_back = out
    os.write(fd, b"HEAD")
    body = os.urandom(70_000)
    sender = Sender(tx, body)
    assert fio.recv_to_file(rx.fileno(), fd, len(body), 10) == len(body)
    sender.finish()
    assert read_back() == b"HEAD" + body
    assert os.lseek(fd, 0, os.SEEK_CUR) == 4 + len(body)


def test_recv_into_append_only_file(fio, conn, tmp_path):
    # splice(2) refuses O_APPEND files: the C version must fall back mid-call
    path = tmp_path / "append"
    path.write_bytes(b"HEAD")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    rx, tx = conn
    body = os.urandom(3 * MiB)
    try:
        sender = Sender(tx, body)
        assert fio.recv_to_file(rx.fileno(), fd, len(body), 10) == len(body)
        sender.finish()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"HEAD" + body


def test_recv_connection_reset(fio, out):
    fd, _ = out
    with socket.create_server(("127.0.0.1", 0)) as listener:
        tx = socket.create_connection(listener.getsockname())
        rx, _ = listener.accept()
    with rx:
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        tx.close()  # linger 0: close sends RST
        with pytest.raises(ConnectionResetError) as info:
            fio.recv_to_file(rx.fileno(), fd, 10, 5)
    assert info.value.op == "receive"


def test_recv_bad_arguments(fio, conn, out, tmp_path):
    rx, _ = conn
    fd, _ = out
    with pytest.raises(ValueError):
        fio.recv_to_file(rx.fileno(), fd, -1, 1)
    with pytest.raises(ValueError):
        fio.recv_to_file(rx.fileno(), fd, 1, float("nan"))
    dead = os.dup(fd)
    os.close(dead)
    with pytest.raises(OSError) as info:
        fio.recv_to_file(dead, fd, 1, 1)
    assert info.value.errno == errno.EBADF


def test_recv_waits_without_the_gil(fio, conn, out):
    rx, tx = conn
    fd, _ = out
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        with watchdog(tx), pytest.raises(TimeoutError):
            fio.recv_to_file(rx.fileno(), fd, 10, 0.5)
    finally:
        stop.set()
        spinner.join()
    assert ticks > 100_000  # the other thread ran while we waited


@pytest.fixture
def alarm():
    """alarm(handler, seconds): a one-shot SIGALRM; restored afterwards."""
    previous = signal.getsignal(signal.SIGALRM)

    def arm(handler, seconds):
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


class Interrupted(Exception):
    pass


def test_recv_signal_handler_exception_stops_the_wait(fio, conn, out, alarm):
    rx, tx = conn
    fd, _ = out

    def handler(signum, frame):
        raise Interrupted

    alarm(handler, 0.2)
    with watchdog(tx), pytest.raises(Interrupted):
        fio.recv_to_file(rx.fileno(), fd, 10, None)


def test_recv_signal_without_exception_is_retried(fio, conn, out, alarm):
    rx, tx = conn
    fd, read_back = out
    seen = []
    alarm(lambda signum, frame: seen.append(signum), 0.1)
    sender = Sender(tx, b"late", pause=0.4)
    assert fio.recv_to_file(rx.fileno(), fd, 4, 5) == 4
    sender.finish()
    assert seen == [signal.SIGALRM] and read_back() == b"late"


# ---- recv_to_file: patience, the progress deadline, urgent data --------------------


# 100 kB is hashed in line; 3 MiB beside the receive (C: the teed pipe and a thread)
@pytest.mark.parametrize("size", [100_000, 3 * MiB])
def test_recv_patience_returns_what_came_and_continues(fio, conn, out, size):
    import hashlib

    rx, tx = conn
    fd, read_back = out
    body = os.urandom(size)
    half = size // 2
    first = Sender(tx, body[:half])  # more than a socket buffer: it is read as it is sent
    hasher = hashlib.sha256()
    with watchdog(tx), pytest.raises(BlockingIOError) as info:
        fio.recv_to_file(rx.fileno(), fd, size, 10, [hasher], patience=0.2)
    first.finish()
    assert info.value.errno == errno.EAGAIN and info.value.op == "receive"
    assert info.value.characters_written == half
    assert hasher.copy().digest() == hashlib.sha256(body[:half]).digest()  # the hashers have seen them all
    assert read_back() == body[:half]
    sender = Sender(tx, body[half:])
    assert fio.recv_to_file(rx.fileno(), fd, size - half, 10, [hasher], patience=0.2) == size - half
    sender.finish()
    assert hasher.digest() == hashlib.sha256(body).digest()
    assert read_back() == body


def test_recv_patience_zero_does_not_wait(fio, conn, out):
    rx, tx = conn
    fd, _ = out
    start = time.monotonic()
    with watchdog(tx), pytest.raises(BlockingIOError) as info:
        fio.recv_to_file(rx.fileno(), fd, 10, 10, patience=0)
    assert info.value.characters_written == 0
    assert time.monotonic() - start < 2


def test_recv_timeout_counts_the_time_waited_before(fio, conn, out):
    rx, tx = conn
    fd, _ = out
    # 4.7 s of the 5 s without a byte have passed before the call: it gives up soon
    start = time.monotonic()
    with watchdog(tx), pytest.raises(TimeoutError) as info:
        fio.recv_to_file(rx.fileno(), fd, 10, 5, waited=4.7)
    assert time.monotonic() - start < 3
    assert info.value.characters_written == 0


def test_recv_budget_gives_control_back_while_bytes_flow(fio, conn, out):
    rx, tx = conn
    fd, read_back = out
    parts = [os.urandom(1000) for _ in range(20)]
    sender = Sender(tx, *parts, pause=0.05)  # 1 s in all
    with pytest.raises(BlockingIOError) as info:
        fio.recv_to_file(rx.fileno(), fd, 20_000, 10, budget=0.3)
    assert 0 < info.value.characters_written < 20_000
    got = info.value.characters_written
    assert fio.recv_to_file(rx.fileno(), fd, 20_000 - got, 10) == 20_000 - got
    sender.finish()
    assert read_back() == b"".join(parts)


@pytest.fixture
def tcp():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        tx = socket.create_connection(listener.getsockname())
        rx, _ = listener.accept()
    with rx, tx:
        yield rx, tx


# sizes: C splice (no hashers), in-line hashing, teed hashing
@pytest.mark.parametrize("size,hashed", [(200_000, False), (3 * MiB, False), (200_000, True), (3 * MiB, True)])
def test_recv_steps_over_an_urgent_byte(fio, tcp, out, size, hashed):
    import hashlib

    rx, tx = tcp
    fd, read_back = out
    body = os.urandom(size)
    half = size // 2

    def send():
        tx.sendall(body[:half])
        # the receive has written the first half: the urgent byte comes at the start of its next read
        wait_until(lambda: os.fstat(fd).st_size == half, timeout=10, interval=0.01)
        tx.send(b"!", socket.MSG_OOB)
        time.sleep(0.2)  # and then nothing for a while: the old C receive spun at the urgent mark
        tx.sendall(body[half:])

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    hashers = [hashlib.sha256()] if hashed else []
    cpu = time.process_time()
    with watchdog(tx):
        assert fio.recv_to_file(rx.fileno(), fd, size, 5, hashers) == size
    sender.join(10)
    assert time.process_time() - cpu < 0.3  # the old C receive spun here until the watchdog
    assert read_back() == body  # the urgent byte is not data
    if hashed:
        assert hashers[0].digest() == hashlib.sha256(body).digest()


def test_recv_reserves_space_as_bytes_arrive(fio, tcp, out):
    rx, tx = tcp
    fd, read_back = out
    body = os.urandom(3 * MiB)
    Sender(tx, body[: MiB + 5]).finish()
    with watchdog(tx), pytest.raises(BlockingIOError):
        fio.recv_to_file(rx.fileno(), fd, 64 * MiB, 10, patience=0.2, reserve=2 * MiB)
    st = os.fstat(fd)
    assert st.st_size == MiB + 5
    # never the 64 MiB announced: at most one step past what was written
    assert st.st_blocks * 512 <= MiB + 5 + 2 * MiB + 64 * 1024
    if fio.__name__ == "pyai.native._cimpl" and fio.preallocate(fd, 4096, offset=16 * MiB):
        # where the file system can reserve (C only), space ahead of what was written is
        assert st.st_blocks * 512 >= 2 * MiB


# ---- write_behind -----------------------------------------------------------

# Run under strace: write (or receive, with argv[3] == "recv") 40 MiB + 5 bytes in
# 1 MiB pieces, writing back behind in 8 MiB steps.
_WRITE_BEHIND_SCRIPT = """
import importlib, os, socket, sys, threading
fio = importlib.import_module(sys.argv[1])
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
piece, total, step = 1 << 20, (40 << 20) + 5, 8 << 20
if sys.argv[3] == "recv":
    rx, tx = socket.socketpair()
    sender = threading.Thread(target=lambda: (tx.sendall(b"w" * total), tx.close()))
    sender.start()
    assert fio.recv_to_file(rx.fileno(), fd, total, 10, writeback=step) == total
    sender.join()
else:
    done = 0
    while done < total:
        n = min(piece, total - done)
        fio.write_all(fd, b"w" * n)
        assert fio.write_behind(fd, done, done + n, step)
        done += n
"""


@pytest.mark.parametrize("how", ["write", "recv"])
def test_write_behind_starts_each_step_and_waits_for_the_one_before(fio, tmp_path, how):
    assert sync_file_range_calls(fio, tmp_path, _WRITE_BEHIND_SCRIPT, how) == WRITTEN_BEHIND


def test_write_behind_within_a_step_does_nothing(fio, out):
    fd, _ = out
    os.write(fd, b"x" * 100)
    assert fio.write_behind(fd, 0, 100, 8 * MiB)


def test_write_behind_a_pipe_cannot_and_says_so(fio):
    r, w = os.pipe()
    with contextlib.closing(os.fdopen(r, "rb")), contextlib.closing(os.fdopen(w, "wb")) as wf:
        assert fio.write_behind(wf.fileno(), 0, 16 * MiB, 8 * MiB) is False


def test_write_behind_errors(fio, out):
    fd, _ = out
    with pytest.raises(ValueError):
        fio.write_behind(fd, 10, 5, MiB)
    with pytest.raises(ValueError):
        fio.write_behind(fd, 0, 5, 0)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        fio.write_behind(w, 0, 16 * MiB, 8 * MiB)
    assert info.value.errno == errno.EBADF and info.value.op == "writeback"


def test_recv_with_writeback_into_a_pipe_still_receives(fio, conn):
    rx, tx = conn
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, MiB)
    except OSError:
        pytest.skip("cannot grow a pipe to hold the body")
    body = os.urandom(768 * 1024)
    sender = Sender(tx, body)
    try:
        assert fio.recv_to_file(rx.fileno(), w, len(body), 10, writeback=64 * 1024) == len(body)
        sender.finish()
        got = b""
        while len(got) < len(body):
            got += os.read(r, len(body) - len(got))
        assert got == body
    finally:
        os.close(r)
        os.close(w)


# ---- write_all -------------------------------------------------------------


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_write_all_large(fio, out, kind):
    fd, read_back = out
    data = os.urandom(20 * MiB + 1)
    fio.write_all(fd, kind(data))
    fio.write_all(fd, kind(b""))
    assert read_back() == data


def test_write_all_short_writes(fio, alarm):
    # A signal during a blocked pipe write makes write() return short.
    data = os.urandom(16 * MiB)
    received = bytearray()
    r, w = os.pipe()

    def drain():
        while chunk := os.read(r, 65536):
            received.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=drain)
    reader.start()
    signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        fio.write_all(w, data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.close(w)
        reader.join()
        os.close(r)
    assert bytes(received) == data


def test_write_all_error(fio, tmp_path):
    fd = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as info:
            fio.write_all(fd, b"x")
    finally:
        os.close(fd)
    assert info.value.errno == errno.EBADF and info.value.op == "write"


# ---- copy_fd -----------------------------------------------------------------


@pytest.fixture
def source(tmp_path):
    data = os.urandom(3 * MiB + 7)
    path = tmp_path / "src"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd, data
    finally:
        os.close(fd)


def test_copy_fd_exact(fio, source, out):
    src, data = source
    dst, read_back = out
    assert fio.copy_fd(src, dst, len(data)) == len(data)
    assert read_back() == data


def test_copy_fd_from_offsets_and_short_at_eof(fio, source, out):
    src, data = source
    dst, read_back = out
    os.lseek(src, 100, os.SEEK_SET)
    os.write(dst, b"HEAD")
    assert fio.copy_fd(src, dst, 1000) == 1000
    assert fio.copy_fd(src, dst, len(data)) == len(data) - 1100  # source EOF
    assert fio.copy_fd(src, dst, 10) == 0
    assert read_back() == b"HEAD" + data[100:]
    assert fio.copy_fd(src, dst, 0) == 0


@pytest.mark.parametrize("direction", ["file-to-pipe", "pipe-to-file"])
def test_copy_fd_falls_back(fio, source, out, direction):
    # copy_file_range cannot use a pipe, and sendfile cannot read one
    src, data = source
    dst, read_back = out
    r, w = os.pipe()
    got = bytearray()
    try:
        if direction == "file-to-pipe":
            worker = threading.Thread(target=lambda: got.extend(_read_all(r)))
            worker.start()
            copied = fio.copy_fd(src, w, len(data))
            os.close(w)
            w = -1
            worker.join()
        else:
            worker = threading.Thread(target=_write_and_close, args=(w, data))
            worker.start()
            copied = fio.copy_fd(r, dst, len(data) + 10)  # stops at the pipe's EOF
            worker.join()
            w = -1
            got = read_back()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert copied == len(data) and bytes(got) == data


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, MiB):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_and_close(fd, data):
    try:
        with memoryview(data) as view:
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def test_copy_fd_error(fio, source):
    src, _ = source
    with pytest.raises(OSError) as info:
        fio.copy_fd(src, src, 10)  # not open for writing
    assert info.value.errno == errno.EBADF and info.value.op == "copy"


# ---- rename_noreplace ----------------------------------------------------------


def test_rename_noreplace_publishes(fio, tmp_path):
    src, dst = tmp_path / "tmp", tmp_path / "final"
    src.write_bytes(b"data")
    fio.rename_noreplace(str(src), str(dst))
    assert not src.exists() and dst.read_bytes() == b"data"


def test_rename_noreplace_refuses_to_replace(fio, tmp_path):
    src, dst = tmp_path / "tmp", tmp_path / "final"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    with pytest.raises(FileExistsError) as info:
        fio.rename_noreplace(str(src), str(dst))
    assert info.value.filename == str(dst) and info.value.op == "publish"
    assert src.read_bytes() == b"new" and dst.read_bytes() == b"old"


def test_rename_noreplace_missing_source(fio, tmp_path):
    src, dst = tmp_path / "missing", tmp_path / "final"
    with pytest.raises(FileNotFoundError) as info:
        fio.rename_noreplace(str(src), str(dst))
    assert info.value.filename == str(src)
    assert not dst.exists()


def test_rename_noreplace_rejects_nul(fio, tmp_path):
    (tmp_path / "a").write_bytes(b"")
    with pytest.raises(ValueError):
        fio.rename_noreplace(str(tmp_path / "a"), str(tmp_path / "b\0c"))
    assert not (tmp_path / "b").exists()


@pytest.fixture(params=["c", "python", "python-link"])
def publish(request, monkeypatch):
    """An implementation of rename_noreplace; "python-link": the twin with a C library without
    renameat2 (link + unlink; C does that only where the kernel refuses RENAME_NOREPLACE)."""
    impl = importlib.import_module({"c": "pyai.native._cimpl"}.get(request.param, "pyai.native._pyimpl"))
    if request.param == "python-link":
        monkeypatch.setattr(impl, "_renameat2", None)
    return impl


def test_rename_noreplace_between_directory_descriptors(publish, tmp_path):
    """As os.rename: names relative to src_dir_fd and dst_dir_fd (PATCH publishes so, naming no path)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "src").write_bytes(b"new")
    (tmp_path / "b" / "taken").write_bytes(b"old")
    a_fd = os.open(tmp_path / "a", os.O_RDONLY | os.O_DIRECTORY)
    b_fd = os.open(tmp_path / "b", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError) as info:
            publish.rename_noreplace("src", "taken", src_dir_fd=a_fd, dst_dir_fd=b_fd)
        assert info.value.filename == "taken" and info.value.op == "publish"
        assert (tmp_path / "b" / "taken").read_bytes() == b"old" and (tmp_path / "a" / "src").exists()
        publish.rename_noreplace("src", "free", src_dir_fd=a_fd, dst_dir_fd=b_fd)
        assert (tmp_path / "b" / "free").read_bytes() == b"new" and not (tmp_path / "a" / "src").exists()
    finally:
        os.close(a_fd)
        os.close(b_fd)


def test_rename_noreplace_moves_a_symlink_not_its_target(publish, tmp_path):
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    publish.rename_noreplace(str(tmp_path / "link"), str(tmp_path / "moved"))
    assert (tmp_path / "moved").is_symlink() and (tmp_path / "target").read_bytes() == b"x"
    assert not (tmp_path / "link").is_symlink()


# ---- openat2 -----------------------------------------------------------------------

RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x04, 0x08


def _openat2_or_skip(fio, *args):
    try:
        return fio.openat2(*args)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            pytest.skip("no openat2 here (kernel < 5.6, or a seccomp filter)")
        raise


def test_openat2_opens_below_the_directory(fio, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    dir_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = _openat2_or_skip(fio, dir_fd, "a/b", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, RESOLVE_BENEATH)
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "a" / "b"))
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


@pytest.mark.parametrize(
    "path, resolve, err",
    [
        ("link", RESOLVE_NO_SYMLINKS, errno.ELOOP),  # what PATCH refuses: a symlink component
        ("a/../..", RESOLVE_BENEATH, errno.EXDEV),  # out of the directory
        ("missing", RESOLVE_BENEATH, errno.ENOENT),
    ],
)
def test_openat2_errors_name_the_path(fio, tmp_path, path, resolve, err):
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    dir_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as info:
            _openat2_or_skip(fio, dir_fd, path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, resolve)
        assert info.value.errno == err and info.value.filename == path and info.value.op == "open"
    finally:
        os.close(dir_fd)


def test_openat2_rejects_nul(fio, tmp_path):
    dir_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(ValueError):
            fio.openat2(dir_fd, "a\0b", os.O_RDONLY, 0)
    finally:
        os.close(dir_fd)


# ---- fsync, fsync_dir ------------------------------------------------------------


def test_fsync(fio, out):
    fd, _ = out
    os.write(fd, b"x")
    fio.fsync(fd)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        fio.fsync(w)
    assert info.value.errno == errno.EBADF and info.value.op == "fsync"


def test_fsync_dir(fio, tmp_path):
    fio.fsync_dir(str(tmp_path))
    fio.fsync_dir(tmp_path)  # path-like
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as info:
        fio.fsync_dir(missing)
    assert info.value.filename == missing and info.value.op == "fsync"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        fio.fsync_dir(str(tmp_path / "file"))


# ---- fadvise, preallocate -----------------------------------------------------------


def test_fadvise_constants(fio):
    for name in ("NORMAL", "SEQUENTIAL", "RANDOM", "WILLNEED", "DONTNEED", "NOREUSE"):
        assert getattr(fio, "FADV_" + name) == getattr(os, "POSIX_FADV_" + name)


def test_fadvise(fio, source):
    src, _ = source
    fio.fadvise(src, 0, 0, fio.FADV_SEQUENTIAL)
    fio.fadvise(src, 4096, 8192, fio.FADV_DONTNEED)
    with pytest.raises(OSError) as info:
        fio.fadvise(src, 0, 0, 12345)  # no such advice
    assert info.value.errno == errno.EINVAL and info.value.op == "fadvise"
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        fio.fadvise(r, 0, 0, fio.FADV_NORMAL)
    assert info.value.errno == errno.EBADF


def test_preallocate(fio, out):
    fd, _ = out
    os.write(fd, b"abc")
    reserved = fio.preallocate(fd, 4 * MiB)
    assert type(reserved) is bool
    st = os.fstat(fd)
    assert st.st_size == 3
    if reserved:
        assert st.st_blocks * 512 >= 4 * MiB
    assert fio.preallocate(fd, 0) is False
    with pytest.raises(ValueError):
        fio.preallocate(fd, -1)
    with pytest.raises(ValueError):
        fio.preallocate(fd, 1, offset=-1)
    if reserved:
        assert fio.preallocate(fd, MiB, offset=8 * MiB) is True
        assert os.fstat(fd).st_size == 3 and os.fstat(fd).st_blocks * 512 >= 5 * MiB


# ---- the fileio selector ---------------------------------------------------------------


def _run(impl, code):
    """Run ``code`` in a fresh interpreter with PYAI_IMPL=impl (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "PYAI_IMPL"}
    env["PYTHONPATH"] = str(ROOT)
    if impl is not None:
        env["PYAI_IMPL"] = impl
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


_CHECK = (
    "import pyai.native._cimpl, pyai.native._pyimpl\n"
    "from pyai import native as fileio\n"
    "mod = {'c': pyai.native._cimpl, 'python': pyai.native._pyimpl}[fileio.__impl__]\n"
    "assert all(getattr(fileio, n) is getattr(mod, n) for n in fileio.__all__)\n"
    "print(fileio.__impl__)\n"
)
_NO_C = "import sys; sys.modules['pyai.native._cimpl'] = None\n"  # makes importing it fail


@pytest.mark.parametrize(
    ("impl", "expected"), [(None, "c"), ("auto", "c"), ("c", "c"), ("python", "python"), (" C ", "c")]
)
def test_selector(impl, expected):
    result = _run(impl, _CHECK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_selector_auto_without_c():
    result = _run(
        "auto", _NO_C + "from pyai import native as fileio; print(fileio.__impl__, fileio._c_unavailable is not None)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["python", "True"]


@pytest.mark.parametrize(
    ("impl", "message"), [("c", "pyai.native._cimpl cannot be imported"), ("fast", "is not valid")]
)
def test_selector_refuses(impl, message):
    result = _run(impl, _NO_C + "from pyai import native as fileio")
    assert result.returncode != 0
    assert "ImportError" in result.stderr and message in result.stderr


def test_c_extension_is_built():
    mod = importlib.import_module("pyai.native._cimpl")
    assert stat.S_ISREG(os.stat(mod.__file__).st_mode) and mod.__file__.endswith(".so")
