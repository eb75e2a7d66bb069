"""pyai.archive.beside: md5 hashed on a thread of its own gives hashlib's digest, bounded,
and its thread ends both when the digest is taken and when the upload is dropped."""

import gc
import hashlib
import os
import threading

import pytest

from pyai.archive import beside, checksums


def beside_threads():
    return [t for t in threading.enumerate() if t.name == "hash-beside"]


def feed(hasher, data, piece):
    view = memoryview(bytearray(data))  # a reused-buffer kind of view, as the receive passes
    for start in range(0, len(data), piece):
        hasher.update(view[start : start + piece])


@pytest.mark.parametrize("size", [0, 1, beside.START, beside.START + 1, 3 * beside.START + 12345])
def test_the_digest_is_hashlibs(size):
    data = os.urandom(size)
    hasher = beside.Beside(hashlib.md5())
    feed(hasher, data, 1 << 20)
    assert hasher.digest() == hashlib.md5(data).digest()
    assert hasher.digest() == hashlib.md5(data).digest()  # asked again: the same
    assert hasher.hexdigest() == hashlib.md5(data).hexdigest()
    assert beside_threads() == []


def test_a_small_body_starts_no_thread():
    hasher = beside.Beside(hashlib.md5())
    feed(hasher, os.urandom(beside.START), 1 << 16)
    assert hasher._thread is None and beside_threads() == []


def test_the_buffer_may_be_reused_at_once():
    """update copies: the receive writes its next bytes into the same buffer right after."""
    hasher = beside.Beside(hashlib.md5())
    buffer = bytearray(1 << 20)
    expected = hashlib.md5()
    for round_ in range(3 * (beside.START >> 20)):
        buffer[:] = bytes([round_ % 251]) * len(buffer)
        expected.update(buffer)
        hasher.update(memoryview(buffer))
    assert hasher.digest() == expected.digest()


def test_a_dropped_hasher_ends_its_thread():
    hasher = beside.Beside(hashlib.md5())
    feed(hasher, os.urandom(2 * beside.START), 1 << 20)
    (thread,) = beside_threads()
    del hasher
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_hashers_put_md5_beside_only_with_others():
    assert isinstance(checksums.hashers(("sha256", "adler32", "md5"))["md5"], beside.Beside)
    assert not isinstance(checksums.hashers(("md5",))["md5"], beside.Beside)
    assert not isinstance(checksums.hashers(("sha256", "md5"))["sha256"], beside.Beside)
