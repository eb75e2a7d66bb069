"""Several digests per file: the adler32 hasher, the stored set, Want-Digest / Want-Repr-Digest,
the Digest / Repr-Digest answers, adler32 on PUT, and the in-flight registry."""

import base64
import hashlib
import os
import socket
import threading
import zlib

import pytest
from werkzeug.datastructures import Headers

from pyai import native
from pyai.archive import checksums
from pyai.archive.inflight import InFlight
from pyai.errors import BadRequest
from pyai.web import digest_fields

BODY = bytes(range(256)) * 4099  # not a multiple of any block size
ADLER = zlib.adler32(BODY).to_bytes(4, "big")
SHA256 = hashlib.sha256(BODY).digest()
MD5 = hashlib.md5(BODY).digest()


def b64(digest):
    return base64.b64encode(digest).decode()


def test_adler32_hasher_is_zlib_in_pieces_and_copies():
    hasher = checksums.new("adler32")
    assert hasher.digest() == (1).to_bytes(4, "big")  # adler32 of nothing
    view = memoryview(BODY)
    for start in range(0, len(BODY), 65537):
        hasher.update(view[start : start + 65537])  # memoryviews of a buffer, as the receive loops pass
    twin = hasher.copy()
    assert hasher.digest() == ADLER and hasher.hexdigest() == ADLER.hex() and hasher.digest_size == 4
    twin.update(b"x")
    assert twin.digest() == zlib.adler32(b"x", zlib.adler32(BODY)).to_bytes(4, "big") != hasher.digest()
    assert checksums.DIGEST_SIZES["adler32"] == 4


def test_adler32_hasher_in_the_native_receive(tmp_path):
    """The receive hands its hashers memoryviews of its buffers (over 1 MiB: on the thread
    beside the splice): the adler32 object takes them as hashlib's do."""
    hashers = [checksums.new("adler32"), hashlib.sha256()]
    out = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    a, b = socket.socketpair()
    sender = threading.Thread(target=lambda: (a.sendall(BODY), a.close()))
    sender.start()
    try:
        moved = native.recv_to_file(b.fileno(), out, len(BODY), 10.0, hashers)
    finally:
        sender.join()
        b.close()
        os.close(out)
    assert moved == len(BODY) and (tmp_path / "f").read_bytes() == BODY
    assert hashers[0].digest() == ADLER and hashers[1].digest() == SHA256


def test_stored_set_round_trip_and_back_compat():
    stored = {"md5": MD5, "sha256": SHA256, "adler32": ADLER}
    text = checksums.encode_set(stored)
    assert text == f"sha256:{SHA256.hex()} md5:{MD5.hex()} adler32:{ADLER.hex()}"
    assert checksums.decode_set(text) == stored
    assert checksums.decode_set(f"sha256:{SHA256.hex()}") == {"sha256": SHA256}  # earlier versions
    # what a newer version might add, or garbage, hides nothing else
    assert checksums.decode_set(f"blake3:00 sha256:{SHA256.hex()} md5:zz") == {"sha256": SHA256}
    assert checksums.decode_set("") == {}
    assert checksums.strongest({"md5": MD5, "adler32": ADLER}) is None
    assert checksums.strongest(stored) == ("sha256", SHA256)


@pytest.mark.parametrize(
    "value, names",
    [
        ("adler32", ("adler32",)),
        ("ADLER32", ("adler32",)),
        ("adler32, md5;q=0.5, sha-256;q=1", ("adler32", "sha256", "md5")),
        ("md5;q=0.3, SHA-256;q=0.9, SHA;q=0.5", ("sha256", "sha1", "md5")),
        ("SHA-512, sha", ("sha512", "sha1")),
        ("md5;q=0, adler32", ("adler32",)),  # q=0: not wanted
        ("crc32c, UNIXsum, md5", ("md5",)),  # unknown: ignored
        ("md5;q=2, adler32;q=abc, sha-256;q=0.001", ("sha256",)),  # malformed q: that member ignored
        ("md5 ; Q=0.5 , adler32", ("adler32", "md5")),
        ("", ()),
        (",,,", ()),
        ("adler", ("adler32",)),  # the RFC 9530 spelling, too
    ],
)
def test_parse_want_digest(value, names):
    assert digest_fields.parse_want_digest(value) == names


@pytest.mark.parametrize(
    "value, names",
    [
        ("sha-256=10, md5=3", ("sha256", "md5")),
        ("md5=3, sha-256=10, adler=5", ("sha256", "adler32", "md5")),
        ("sha-256=0, md5=1", ("md5",)),  # 0: not wanted
        ("sha-256, md5=11, sha=x, adler=2", ("adler32",)),  # no weight, out of range, not a number
        ("crc32c=9, sha-512=1;param", ("sha512",)),
        ("garbage", ()),
    ],
)
def test_parse_want_repr_digest(value, names):
    assert digest_fields.parse_want_repr_digest(value) == names


def test_wanted_digests_from_headers():
    assert digest_fields.wanted_digests(Headers({})) is None
    wanted = digest_fields.wanted_digests(Headers({"Want-Digest": "adler32", "Want-Repr-Digest": "sha-256=3, md5=9"}))
    assert wanted.digest == ("adler32",) and wanted.repr_digest == ("md5", "sha256")
    assert wanted.names() == ("adler32", "md5", "sha256")
    assert digest_fields.wanted_digests(Headers({"Want-Digest": "frob"})).names() == ()


def test_answers_as_davix_and_rfc_9530_read_them():
    stored = {"sha256": SHA256, "adler32": ADLER, "md5": MD5}
    wanted = digest_fields.Wanted(digest=("adler32",))
    assert digest_fields.response_headers(stored, wanted) == {"Digest": f"ADLER32={ADLER.hex()}"}
    both = digest_fields.Wanted(digest=("md5", "adler32", "sha256"), repr_digest=("adler32", "sha256"))
    headers = digest_fields.response_headers(stored, both)
    # davix splits on "," and matches "<algorithm>=" at the start of a piece: no space after the comma
    assert headers["Digest"] == f"MD5={b64(MD5)},ADLER32={ADLER.hex()},SHA-256={b64(SHA256)}"
    assert headers["Repr-Digest"] == f"adler=:{b64(ADLER)}:, sha-256=:{b64(SHA256)}:"
    # a range gets no Digest; a digest not at hand is left out
    assert digest_fields.response_headers(stored, both, partial=True) == {"Repr-Digest": headers["Repr-Digest"]}
    assert digest_fields.response_headers({"md5": MD5}, wanted) == {}
    # adler32 keeps its leading zeros
    assert digest_fields.digest_value("adler32", bytes([0, 0, 1, 2])) == "00000102"


def test_put_digest_accepts_adler32():
    assert digest_fields.expected_digests(Headers({"Digest": f"adler32={ADLER.hex()}"})) == {"adler32": ADLER}
    assert digest_fields.expected_digests(Headers({"Digest": "ADLER32=102"})) == {"adler32": bytes([0, 0, 1, 2])}
    assert digest_fields.expected_digests(Headers({"Content-Digest": f"adler=:{b64(ADLER)}:"})) == {"adler32": ADLER}
    for bad in ("adler32=xyz", "adler32=123456789", "adler32="):
        with pytest.raises(BadRequest, match="Digest"):
            digest_fields.expected_digests(Headers({"Digest": bad}))


def test_in_flight_claims_a_path_once_and_a_few_at_once():
    registry = InFlight(2)
    with registry.claim("/a") as first:
        with registry.claim("/a") as again:
            assert first and not again
        with registry.claim("/b") as second, registry.claim("/c") as third:
            assert second and not third  # the limit
    with registry.claim("/a") as later:
        assert later  # released


def test_archive_primary_digest_is_the_first_configured_one_stored(tmp_path):
    """What an answer carries when the client asks for no digest: the first configured algorithm kept."""
    from pyai.archive.service import Archive
    from pyai.backends.posix import PosixBackend
    from pyai.config import load

    config = load({"prefix": str(tmp_path)}, environ={"HOME": str(tmp_path), "PAI_CHECKSUM": "md5, sha256"})
    archive = Archive(config, PosixBackend(config))
    path = tmp_path / "f"
    path.write_bytes(b"x")
    assert archive.checksums(str(path)) == {}
    assert archive.primary_digest({}) == {}
    os.setxattr(path, "user.pyai.checksum", f"sha256:{hashlib.sha256(b'x').hexdigest()} md5:{'00' * 16}".encode())
    stored = archive.checksums(str(path))
    assert stored == {"sha256": hashlib.sha256(b"x").digest(), "md5": bytes(16)}
    assert archive.primary_digest(stored) == {"md5": bytes(16)}  # the first configured one kept


def test_put_md5_in_hex_as_gfal2_sends_it():
    """gfal-copy -K MD5:<hex> sends Content-MD5: <32 hex digits>; base64 stays what RFC 1864 says."""
    assert digest_fields.expected_digests(Headers({"Content-MD5": MD5.hex()})) == {"md5": MD5}
    assert digest_fields.expected_digests(Headers({"Content-MD5": b64(MD5)})) == {"md5": MD5}
    assert digest_fields.expected_digests(Headers({"Digest": f"md5={MD5.hex().upper()}"})) == {"md5": MD5}
    with pytest.raises(BadRequest, match="Content-MD5"):
        digest_fields.expected_digests(Headers({"Content-MD5": MD5.hex()[:-1]}))
