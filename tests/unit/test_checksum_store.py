"""The posix checksum store's pure parts: sidecar names and contents."""

import hashlib
import zlib
import os

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
