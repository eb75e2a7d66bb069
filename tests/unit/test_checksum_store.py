"""The posix checksum store's pure parts: sidecar names and contents."""

import hashlib
import os
import zlib

import pytest

from pyai.archive.checksums import decode_set
from pyai.backends import checksum_store

DIGEST = hashlib.sha256(b"x").digest()


def test_sidecar_names_are_never_ids_and_fit_a_file_name():
    assert checksum_store.sidecar_path("/a/b/1234") == "/a/b/.pyai-sum-1234"
    longest = "A" * 255  # the longest id
    long_sidecar = os.path.basename(checksum_store.sidecar_path("/a/" + longest))
    assert long_sidecar.startswith(".pyai-sum-~") and len(long_sidecar) <= 255
    assert long_sidecar != os.path.basename(checksum_store.sidecar_path("/a/" + "B" * 255))


def test_sidecar_describes_one_inode_and_size(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = os.stat(path)
    stored = {"sha256": DIGEST, "adler32": zlib.adler32(b"x").to_bytes(4, "big")}
    text = checksum_store.sidecar_text(stored, st)
    assert checksum_store.parse_sidecar(text, st) == stored == decode_set(" ".join(text.split()[:-2]))
    other = tmp_path / "g"
    other.write_bytes(b"y")  # same size, another inode: a sidecar left by a replaced file
    assert checksum_store.parse_sidecar(text, os.stat(other)) == {}
    path.write_bytes(b"xy")  # same inode, another size
    assert checksum_store.parse_sidecar(text, os.stat(path)) == {}
    assert checksum_store.parse_sidecar("garbage", st) == {}


def test_sidecar_of_an_earlier_version_still_reads(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = os.stat(path)
    old = f"sha256:{DIGEST.hex()} {st.st_ino} {st.st_size}\n"  # one checksum, as before
    assert checksum_store.parse_sidecar(old, st) == {"sha256": DIGEST}


def test_add_merges_in_one_xattr_and_keeps_the_file_read_only(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.setxattr(path, checksum_store.XATTR, f"sha256:{DIGEST.hex()}".encode())  # as an earlier version left it
    os.chmod(path, 0o444)
    md5 = hashlib.md5(b"x").digest()
    fd = os.open(path, os.O_RDONLY)
    try:
        merged = checksum_store.add(str(path), fd, {"md5": md5, "sha256": b"\0" * 32})
    finally:
        os.close(fd)
    assert merged == {"sha256": DIGEST, "md5": md5}  # a stored digest is never replaced
    assert os.getxattr(path, checksum_store.XATTR) == f"sha256:{DIGEST.hex()} md5:{md5.hex()}".encode()
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o444)


def test_add_as_the_owner_of_a_read_only_file_without_root(tmp_path):
    """Non-root: user xattrs of a 0444 file need write permission; add makes it writable for the one call."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user for the test")
    directory = tmp_path / "d"
    directory.mkdir()
    path = directory / "f"
    path.write_bytes(b"x")
    os.chmod(path, 0o444)
    os.chown(path, 65534, 65534)
    md5 = hashlib.md5(b"x").digest()
    fd = os.open(path, os.O_RDONLY)  # opened here: the child need not reach the test's directory
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: as nobody, the owner of the file
        why = b"ok"
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                os.setxattr(fd, checksum_store.XATTR, b"x")
                why = b"setxattr of a 0444 file worked without the dance"
            except PermissionError:  # what makes the dance needed
                checksum_store.add(str(path), fd, {"md5": md5})
        except OSError as exc:  # reported to the parent, which fails the test
            why = repr(exc).encode()
        finally:
            os.write(report_w, why)
            os._exit(0)
    os.close(report_w)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.read(report_r, 4096) == b"ok"
    os.close(report_r)
    assert os.getxattr(path, checksum_store.XATTR) == f"md5:{md5.hex()}".encode()
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o444)


def test_add_refuses_a_file_not_read_only_as_archived(tmp_path):
    """The dance only ever turns 0444 into 0644 and back: any other mode is not pyai's to touch."""
    if os.geteuid() == 0:
        pytest.skip("root needs no permission for user xattrs")
    path = tmp_path / "f"
    path.write_bytes(b"x")
    os.chmod(path, 0o400)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(PermissionError):
            checksum_store.add(str(path), fd, {"md5": hashlib.md5(b"x").digest()})
    finally:
        os.close(fd)
