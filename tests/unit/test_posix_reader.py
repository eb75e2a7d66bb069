"""The posix backend's reader: a descriptor with the facts GET needs, never through a symlink nor a
FIFO, and never leaking its descriptor (it is not a file object, so it closes it itself)."""

import gc
import os

import pytest

from pyai.backends.posix import PosixReader, etag_of

DATA = bytes(range(256)) * 4000  # past one read block of the whole-file read


@pytest.fixture
def stored(tmp_path):
    path = tmp_path / "1"
    path.write_bytes(DATA)
    return str(path)


def test_it_reads_seeks_and_tells_as_a_file_does(stored):
    with PosixReader(stored) as reader:
        st = os.stat(stored)
        assert (reader.size, reader.mtime, reader.etag, reader.path) == (len(DATA), st.st_mtime, etag_of(st), stored)
        assert reader.read(10) == DATA[:10]
        assert reader.tell() == 10
        assert reader.seek(1000) == 1000
        buffer = bytearray(100)
        assert reader.readinto(buffer) == 100 and buffer == DATA[1000:1100]
        assert reader.read() == DATA[1100:]
        assert reader.read(5) == b""
    with pytest.raises(ValueError):
        reader.fileno()  # closed
    reader.close()  # twice is harmless


def test_a_reader_dropped_unclosed_closes_its_descriptor(stored):
    reader = PosixReader(stored)
    fd = reader.fileno()
    del reader
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "missing"])
def test_only_a_regular_file_is_opened(tmp_path, stored, kind):
    path = tmp_path / "other"
    if kind == "symlink":
        path.symlink_to(stored)
    elif kind == "fifo":
        os.mkfifo(path)  # opening must not block waiting for a writer
    elif kind == "directory":
        path.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        PosixReader(str(path))
    assert len(os.listdir("/proc/self/fd")) == before  # nothing left open by the refusal


def test_its_descriptor_blocks_for_anyone_who_reads_it_by_number(stored):
    """Opened O_NONBLOCK (a FIFO must not hold the open), its one small read is taken as it is;
    whoever gets the descriptor itself (sendfile, a recall's reads) gets blocking reads, which an
    HSM's file system needs to recall a file from tape instead of answering EAGAIN."""
    with PosixReader(stored) as reader:
        assert reader.read(10) == DATA[:10]
        assert reader.checksums() == {}
        assert os.get_blocking(reader.fileno())
        assert reader.read(10) == DATA[10:20]
