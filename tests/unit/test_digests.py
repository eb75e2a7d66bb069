"""The digest headers (RFC 9530, RFC 3230, Content-MD5), the stored form and the config name."""

import base64
import hashlib

import pytest

from pyai.archive import checksums
from pyai.config import load
from pyai.errors import BadRequest, ConfigError
from pyai.web import digest_fields

BODY = b"the bytes of a body"
SHA256 = hashlib.sha256(BODY).digest()
SHA512 = hashlib.sha512(BODY).digest()
MD5 = hashlib.md5(BODY).digest()
SHA1 = hashlib.sha1(BODY).digest()


def b64(data):
    return base64.b64encode(data).decode()


class Headers(dict):
    """A case-insensitive header mapping, as werkzeug's."""

    def get(self, name, default=None):
        for key, value in self.items():
            if key.lower() == name.lower():
                return value
        return default


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Content-Digest": f"sha-256=:{b64(SHA256)}:"}, {"sha256": SHA256}),
        ({"Content-Digest": f"sha-512=:{b64(SHA512)}:"}, {"sha512": SHA512}),
        ({"Content-Digest": f"sha-256=:{b64(SHA256)}:, sha-512=:{b64(SHA512)}:"}, {"sha256": SHA256, "sha512": SHA512}),
        ({"Content-Digest": f"sha-256=:{b64(SHA256)}:;param=1"}, {"sha256": SHA256}),
        ({"Content-Digest": f"md5=:{b64(MD5)}:, sha=:{b64(SHA1)}:"}, {"md5": MD5, "sha1": SHA1}),
        ({"Digest": f"SHA-256={b64(SHA256)}"}, {"sha256": SHA256}),
        ({"Digest": f"sha-256={b64(SHA256)}"}, {"sha256": SHA256}),
        ({"Digest": f"md5={b64(MD5)},SHA-512={b64(SHA512)}"}, {"md5": MD5, "sha512": SHA512}),
        ({"Digest": f"SHA={b64(SHA1)}"}, {"sha1": SHA1}),
        ({"Content-MD5": b64(MD5)}, {"md5": MD5}),
        ({"Content-MD5": b64(MD5), "Digest": f"MD5={b64(MD5)}"}, {"md5": MD5}),
        ({}, {}),
        # unknown algorithms beside known ones are ignored (RFC 9530 section 6)
        ({"Content-Digest": f"crc32c=:AAAAAA==:, sha-256=:{b64(SHA256)}:"}, {"sha256": SHA256}),
        ({"Digest": f"UNIXsum=30637, SHA-256={b64(SHA256)}"}, {"sha256": SHA256}),
    ],
)
def test_expected_digests(headers, expected):
    assert digest_fields.expected_digests(Headers(headers)) == expected


@pytest.mark.parametrize(
    "headers, says",
    [
        ({"Content-Digest": f"sha-256={b64(SHA256)}"}, "Content-Digest"),  # not a byte sequence
        ({"Content-Digest": "sha-256=:not base64!:"}, "Content-Digest"),
        ({"Content-Digest": f"sha-256=:{b64(SHA256[:20])}:"}, "32 bytes"),
        ({"Content-Digest": "sha-256"}, "Content-Digest"),
        ({"Content-Digest": f"SHA-256=:{b64(SHA256)}:"}, "Content-Digest"),  # keys are lower case
        ({"Content-Digest": f"sha-256=:{b64(SHA256)}:,"}, "empty"),
        ({"Content-Digest": ""}, "Content-Digest"),
        ({"Digest": "SHA-256"}, "Digest"),
        ({"Digest": "SHA-256=***"}, "Digest"),
        ({"Digest": f"MD5={b64(SHA256)}"}, "16 bytes"),
        ({"Content-MD5": "abc"}, "Content-MD5"),
        ({"Content-MD5": b64(SHA1)}, "16 bytes"),
        ({"Content-MD5": b64(MD5), "Digest": f"MD5={b64(MD5[::-1])}"}, "another value"),
    ],
)
def test_malformed_digest_headers(headers, says):
    with pytest.raises(BadRequest) as caught:
        digest_fields.expected_digests(Headers(headers))
    assert says in caught.value.message


@pytest.mark.parametrize("headers", [{"Content-Digest": "crc32c=:AAAAAA==:"}, {"Digest": "UNIXsum=30637"}])
def test_only_unknown_algorithms_is_refused(headers):
    with pytest.raises(BadRequest) as caught:
        digest_fields.expected_digests(Headers(headers))
    assert "cannot check" in caught.value.message and "sha-256" in caught.value.message


def test_response_headers():
    assert digest_fields.response_headers({}) == {}
    full = digest_fields.response_headers({"sha256": SHA256})
    assert full == {"Digest": f"SHA-256={b64(SHA256)}", "Repr-Digest": f"sha-256=:{b64(SHA256)}:"}
    assert digest_fields.response_headers({"sha256": SHA256}, partial=True) == {
        "Repr-Digest": f"sha-256=:{b64(SHA256)}:"
    }
    assert digest_fields.response_headers({"md5": MD5})["Digest"] == f"MD5={b64(MD5)}"
    # what we send, we read back
    sent = digest_fields.response_headers({"sha512": SHA512})
    assert digest_fields.expected_digests(
        Headers({"Content-Digest": sent["Repr-Digest"], "Digest": sent["Digest"]})
    ) == {"sha512": SHA512}


def test_stored_form_round_trip():
    for name in checksums.ALGORITHMS:
        hasher = checksums.new(name)
        hasher.update(BODY)
        digest = hasher.digest()
        assert checksums.decode(checksums.encode(name, digest)) == (name, digest)
    assert checksums.encode("sha256", SHA256) == "sha256:" + SHA256.hex()
    for bad in ("", "sha256", "sha256:zz", "sha256:" + SHA256.hex()[:-2], "crc32:00000000", "md5:" + SHA256.hex()):
        assert checksums.decode(bad) is None


def test_mismatch():
    assert checksums.mismatch({}, {"sha256": SHA256}) is None
    assert checksums.mismatch({"sha256": SHA256}, {"sha256": SHA256, "md5": MD5}) is None
    assert checksums.mismatch({"sha256": SHA256, "md5": MD5[::-1]}, {"sha256": SHA256, "md5": MD5}) == "md5"


@pytest.mark.parametrize(
    "text, names",
    [
        ("sha256", ("sha256",)),
        ("SHA-256", ("sha256",)),
        ("sha512", ("sha512",)),
        ("sha1", ("sha1",)),
        ("md5", ("md5",)),
        ("adler32", ("adler32",)),
        ("ADLER32, sha-256", ("adler32", "sha256")),
        ("sha256,adler32,md5,sha256", ("sha256", "adler32", "md5")),
        ("none", ()),
    ],
)
def test_config_checksum(tmp_path, text, names):
    config = load({"prefix": str(tmp_path)}, environ={"PAI_CHECKSUM": text, "HOME": str(tmp_path)})
    assert config.checksums == names


def test_config_checksum_default_and_bad(tmp_path):
    default = load({"prefix": str(tmp_path)}, environ={"HOME": str(tmp_path)})
    assert default.checksums == ("sha256", "adler32", "md5")
    for bad in ("crc32", "sha256, crc32", "none, md5", ","):
        with pytest.raises(ConfigError, match="PAI_CHECKSUM"):
            load({"prefix": str(tmp_path)}, environ={"PAI_CHECKSUM": bad, "HOME": str(tmp_path)})
