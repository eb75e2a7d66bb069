"""pyai.archive.beside: the digests of a body hashed in lanes, each on a thread of its own,
give hashlib's (and zlib's) digests, bounded, and the threads end both when the digests are
taken and when the upload is dropped."""

import gc
import hashlib
import os
import threading
import zlib

import pytest

from pyai.archive import beside, checksums

NAMES = ("sha256", "adler32", "md5")


def beside_threads():
    return [t for t in threading.enumerate() if t.name == "hash-beside"]


def expected(data, names=NAMES):
    return {
        name: zlib.adler32(data).to_bytes(4, "big") if name == "adler32" else hashlib.new(name, data).digest()
        for name in names
    }


def group(names=NAMES, lanes=(("md5",), ("sha256", "adler32"))):
    return beside.Beside({name: checksums.new(name) for name in names}, lanes)


def feed(digesting, data, piece):
    view = memoryview(bytearray(data))  # a reused-buffer kind of view, as the receive passes
    for start in range(0, len(data), piece):
        digesting.update(view[start : start + piece])


@pytest.mark.parametrize("piece", [1 << 20, 65536 + 3])
@pytest.mark.parametrize(
    "size", [0, 1, beside.START, beside.START + 1, beside.START + beside.SLAB * (beside.SLABS + 3) + 12345]
)
def test_the_digests_are_hashlibs(size, piece):
    data = os.urandom(size)
    digesting = group()
    feed(digesting, data, piece)
    assert digesting.digests() == expected(data)
    assert digesting.digests() == expected(data)  # asked again: the same
    assert beside_threads() == []


def test_a_small_body_starts_no_thread():
    digesting = group()
    feed(digesting, os.urandom(beside.START), 1 << 16)
    assert digesting._threads == [] and beside_threads() == []


def test_one_lane_is_hashed_in_line():
    digesting = group(lanes=(NAMES,))
    data = os.urandom(2 * beside.START)
    feed(digesting, data, 1 << 20)
    assert digesting._threads == [] and beside_threads() == []
    assert digesting.digests() == expected(data)


def test_each_lane_has_a_thread_and_memory_is_bounded():
    digesting = group(lanes=[(name,) for name in NAMES])
    data = os.urandom(beside.START + 20 * beside.SLAB)
    feed(digesting, data, 1 << 20)
    assert len(beside_threads()) == 3
    assert digesting._made <= beside.SLABS  # 20 slabs went through at most SLABS buffers
    assert digesting.digests() == expected(data)
    assert beside_threads() == []
    assert digesting._free.empty() and digesting._slab is None  # the slabs are let go with the digests


def test_the_buffer_may_be_reused_at_once():
    """update copies: the receive writes its next bytes into the same buffer right after."""
    digesting = group()
    buffer = bytearray(1 << 20)
    whole = bytearray()
    for round_ in range(3 * (beside.START >> 20)):
        buffer[:] = bytes([round_ % 251]) * len(buffer)
        whole += buffer
        digesting.update(memoryview(buffer))
    assert digesting.digests() == expected(bytes(whole))


def test_a_lane_that_fails_raises_at_digests():
    class Broken:
        seen = 0

        def update(self, data):
            self.seen += memoryview(data).nbytes
            if self.seen > beside.START:  # on its lane's thread, not in line
                raise ValueError("broken")

        def digest(self):
            return b""

    digesting = beside.Beside({"md5": hashlib.md5(), "broken": Broken()}, (("md5",), ("broken",)))
    feed(digesting, os.urandom(beside.START + 3 * beside.SLAB * beside.SLABS), 1 << 20)  # the slabs keep coming back
    with pytest.raises(ValueError, match="broken"):
        digesting.digests()
    assert beside_threads() == []


def test_dropped_digests_end_their_threads():
    digesting = group()
    feed(digesting, os.urandom(2 * beside.START), 1 << 20)
    threads = beside_threads()
    assert len(threads) == 2
    del digesting
    gc.collect()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_lanes_give_the_slowest_a_lane_of_its_own():
    split = checksums.lanes(NAMES, cores=2)  # md5 alone where sha256 has SHA extensions
    assert len(split) == 2 and (max(NAMES, key=checksums.cost),) in split
    assert sorted(name for lane in split for name in lane) == sorted(NAMES)
    assert checksums.lanes(NAMES, cores=4) == [("sha256",), ("adler32",), ("md5",)]
    assert checksums.lanes(NAMES, cores=1) == [NAMES]


def test_digesting_hashes_one_algorithm_in_line():
    digesting = checksums.digesting(("md5",))
    feed(digesting, os.urandom(2 * beside.START), 1 << 20)
    assert beside_threads() == []
    assert checksums.digesting(()).as_hashers() == ()


@pytest.mark.parametrize("offset", [0, 1, 31])
def test_adler32_is_zlibs(offset):
    data = os.urandom(3 << 20) + b"\xff" * 70000  # the largest bytes test the sums' bounds
    view = memoryview(data)[offset:]
    value = 1
    hasher = checksums.new("adler32")
    for size in (0, 1, 31, 32, 33, 5551, 5552, 5553, 1 << 20, len(view)):
        piece = view[:size]
        assert checksums._adler32(piece, value) == zlib.adler32(piece, value)
        value = zlib.adler32(piece, value)
        hasher.update(piece)
    assert hasher.digest() == value.to_bytes(4, "big")


@pytest.mark.parametrize("lanes", [(("md5",), ("sha256", "adler32")), (NAMES,)])
def test_fill_reads_a_pipe_into_the_digests(lanes):
    """The tee reader's way in: each ``fill`` reads what the pipe holds, 0 at its end."""
    data = os.urandom(beside.START + 5 * beside.SLAB + 777)
    read_fd, write_fd = os.pipe()

    def writer():
        with os.fdopen(write_fd, "wb") as pipe:
            for start in range(0, len(data), 100_000):
                pipe.write(data[start : start + 100_000])

    thread = threading.Thread(target=writer)
    thread.start()
    digesting = group(lanes=lanes)
    try:
        while digesting.fill(read_fd):
            pass
    finally:
        os.close(read_fd)
        thread.join()
    assert digesting.digests() == expected(data)
    assert beside_threads() == []
