"""Tokens the archive issues (pyai/web/issued_tokens.py): their format, their signature, their
expiry (on an injected clock), the token requests' caveats and validity, and who may ask for what."""

import base64
import json

import pytest

from pyai.errors import BadRequest
from pyai.web import issued_tokens
from pyai.web.auth import StaticRights
from pyai.web.issued_tokens import (
    MAX_VALIDITY,
    IssuedGrant,
    IssuedTokens,
    TokenRequest,
    mint,
    parse_duration,
    parse_request,
    verify,
)
from pyai.web.scopes import STAT, STAT_RIGHT
from pyai.web.wlcg_tokens import TokenRejected

SECRET = b"s" * 16 + b"\x00\xff" * 8  # 32 bytes, not all of them text
OTHER = b"another secret of thirty-two b.."
NOW = 1_800_000_000.25


class Clock:
    """A clock the test moves."""

    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def request(activities=("DOWNLOAD", "LIST"), path="/data/run1", validity=3600, before=None):
    return TokenRequest(tuple(activities), path, validity, before)


def body(caveats=("activity:DOWNLOAD,LIST",), validity="PT60M", **extra):
    return json.dumps({"caveats": list(caveats), "validity": validity, **extra}).encode()


def payload_of(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def rejected(secret, token, now, match):
    with pytest.raises(TokenRejected, match=match) as caught:
        verify(secret, token, now)
    for part in token.split("."):
        assert len(part) < 8 or part not in caught.value.reason
    return caught.value


# --- the format -------------------------------------------------------------------------


def test_a_token_round_trips():
    tokens = IssuedTokens(SECRET, Clock())
    token, lifetime = tokens.issue("cartd", request(("DOWNLOAD", "LIST", "STAGE")))
    assert lifetime == 3600
    version, payload, signature = token.split(".")
    assert version == "pyai1" and len(signature) == 43  # 32 bytes of HMAC-SHA256, base64url without padding
    assert "=" not in token and "+" not in token and "/" not in token
    assert payload_of(token) == {
        "act": ["storage.read", "storage.stage"],
        "exp": int(NOW) + 3600,
        "path": "/data/run1",
        "sub": "cartd",
    }
    grant = tokens.verify(token)
    assert grant == IssuedGrant("cartd", "/data/run1", frozenset({"storage.read", "storage.stage"}), int(NOW) + 3600)
    assert grant.name == "issued:cartd" and grant.owner == "issued cartd"


def test_mint_and_verify_are_each_other_s_inverse():
    grant = IssuedGrant("jwt:iam.example:jdoe@example.org", "/", frozenset({"storage.modify"}), 2_000_000_000)
    assert verify(SECRET, mint(SECRET, grant), NOW) == grant
    assert mint(SECRET, grant) == mint(SECRET, grant)  # deterministic: nothing but the grant is in it


def test_the_secret_is_never_shown():
    tokens = IssuedTokens(SECRET)
    assert "s" * 16 not in repr(tokens) and "s" * 16 not in str(tokens)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        IssuedTokens(SECRET[:31])


# --- tampering ------------------------------------------------------------------------------


def flip(text, index):
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_a_changed_payload_or_signature_is_refused():
    token = mint(SECRET, IssuedGrant("cartd", "/data", frozenset({"storage.read"}), int(NOW) + 60))
    version, payload, signature = token.split(".")
    rejected(SECRET, f"{version}.{flip(payload, 10)}.{signature}", NOW, "bad signature")
    rejected(SECRET, f"{version}.{payload}.{flip(signature, 5)}", NOW, "bad signature")
    # a payload of the attacker's choosing (a wider path, a longer life) under the real signature
    wider = mint(SECRET, IssuedGrant("cartd", "/", frozenset({"storage.modify"}), int(NOW) + 10**6)).split(".")[1]
    rejected(SECRET, f"{version}.{wider}.{signature}", NOW, "bad signature")
    # the signature covers the version too
    rejected(SECRET, f"pyai2.{payload}.{signature}", NOW, "malformed")


def test_a_token_of_another_secret_is_refused():
    token = mint(OTHER, IssuedGrant("cartd", "/data", frozenset({"storage.read"}), int(NOW) + 60))
    rejected(SECRET, token, NOW, "bad signature")


@pytest.mark.parametrize(
    "token",
    [
        "pyai1.",
        "pyai1..",
        "pyai1.abc",
        "pyai1.abc.",
        "pyai1..abc",
        "pyai1.a=b.c",
        "pyai1.abc.d+f",
        "pyai1.a.b.c",
        "pyai1.abc.def ",
        "pyai1." + "a" * 20000 + ".b",
    ],
)
def test_malformed_tokens_are_refused(token):
    rejected(SECRET, token, NOW, "malformed|too long|bad signature")


def test_a_signed_payload_that_is_no_grant_is_refused():
    """Only pyai signs, so this never happens; the check is there all the same."""
    for claims in ({"sub": "x"}, {"act": ["storage.write"], "exp": 1 << 40, "path": "/", "sub": "x"}, [1, 2]):
        signed = "pyai1." + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = signed + "." + issued_tokens._signature(SECRET, signed)
        rejected(SECRET, token, NOW, "malformed")


# --- expiry on a clock the test moves ---------------------------------------------------------


def test_a_token_expires_at_its_exp_exactly():
    clock = Clock()
    tokens = IssuedTokens(SECRET, clock)
    token, lifetime = tokens.issue("cartd", request(validity=90))
    expires = payload_of(token)["exp"]
    assert expires == int(NOW) + 90 == int(NOW) + lifetime
    clock.now = expires - 0.001
    assert tokens.verify(token).expires == expires
    clock.now = expires
    with pytest.raises(TokenRejected, match="expired"):
        tokens.verify(token)
    clock.now = expires + 3600
    with pytest.raises(TokenRejected, match="expired"):
        tokens.verify(token)


def test_the_validity_is_cut_to_the_maximum():
    tokens = IssuedTokens(SECRET, Clock())
    token, lifetime = tokens.issue("cartd", request(validity=86400))
    assert lifetime == MAX_VALIDITY == 12 * 3600
    assert payload_of(token)["exp"] == int(NOW) + MAX_VALIDITY


def test_a_before_caveat_brings_the_expiry_forward():
    tokens = IssuedTokens(SECRET, Clock())
    token, lifetime = tokens.issue("cartd", request(validity=3600, before=NOW + 600.5))
    assert lifetime == 600 and payload_of(token)["exp"] == int(NOW) + 600
    with pytest.raises(BadRequest, match="before"):
        tokens.issue("cartd", request(before=NOW - 1))


# --- what a grant allows ----------------------------------------------------------------------


def test_a_grant_covers_its_path_component_by_component():
    grant = IssuedGrant("cartd", "/foo", frozenset({"storage.read"}), int(NOW) + 60)
    for path in ("/foo", "/foo/", "/foo/bar", "/foo/bar/baz", "//foo/./bar"):
        assert grant.allows(("storage.read",), path), path
    for path in ("/foobar", "/fo", "/", "/bar/foo", "/foo/../etc", "foo"):
        assert not grant.allows(("storage.read",), path), path
    assert not grant.allows(("storage.create", "storage.modify"), "/foo/bar")
    assert grant.allows(STAT, "/foo/bar")  # every issued token may stat its path
    assert grant.scopes == (("storage.read", "/foo"), (STAT_RIGHT, "/foo"))


def test_list_alone_is_a_stat_alone():
    grant = IssuedGrant("cartd", "/foo", frozenset(), int(NOW) + 60)
    assert grant.allows(STAT, "/foo/bar")
    assert not any(grant.allows((activity,), "/foo/bar") for activity in issued_tokens.STORAGE_ACTIVITIES)


# --- token requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("PT60M", 3600),
        ("PT190M", 11400),
        ("P1D", 86400),
        ("PT3600S", 3600),
        ("pt1h", 3600),
        ("PT48h", 172800),
        ("P1DT2H3M4S", 93784),
        ("P2W", 1209600),
        ("PT1.5S", 1),
        ("PT0,75S", 0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "60", "PT60", "P1M", "P1Y", "PT-1H", "P1H", "T1H", "PT1H ", "1h"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="ISO 8601 duration"):
        parse_duration(text)


def test_gfal2_s_source_and_destination_requests():
    source = parse_request(b'{"caveats": ["activity:DOWNLOAD,LIST"], "validity": "PT190M"}', "/data/run1")
    assert source == TokenRequest(("DOWNLOAD", "LIST"), "/data/run1", 11400)
    assert source.storage_activities() == {"storage.read"}
    destination = parse_request(body(["activity:MANAGE,UPLOAD,DELETE,LIST"], "PT190M"), "/data//out/")
    assert destination.path == "/data/out"
    assert destination.storage_activities() == {"storage.create", "storage.modify"}


def test_every_dcache_activity():
    every = "DOWNLOAD,UPLOAD,DELETE,MANAGE,LIST,READ_METADATA,UPDATE_METADATA,STAGE"
    asked = parse_request(body([f"activity:{every}"]), "/")
    assert asked.storage_activities() == {"storage.read", "storage.create", "storage.modify", "storage.stage"}
    listing = parse_request(body(["activity:LIST,READ_METADATA"]), "/")
    assert listing.storage_activities() == frozenset()


def test_caveats_that_restrict():
    # activity caveats are intersected, path caveats narrow, before caveats bring the end forward
    asked = parse_request(
        body(
            [
                "activity:DOWNLOAD,LIST,UPLOAD",
                "activity:LIST, DOWNLOAD",
                "path:/data/run1/",
                "path:/data",
                "before:2030-01-31T12:00:00Z",
                "before:2030-01-31T13:00:00+02:00",
            ]
        ),
        "/data",
    )
    assert asked.activities == ("DOWNLOAD", "LIST")
    assert asked.path == "/data/run1"
    assert asked.before == 1896087600.0  # 11:00 UTC: the earlier of the two


@pytest.mark.parametrize(
    "data, words",
    [
        (b"not json", "is JSON"),
        (b"[]", "JSON object"),
        (b"", "is JSON"),
        (b"[" * 100000, "is JSON"),
        (json.dumps({"validity": "PT1H"}).encode(), '"caveats"'),
        (json.dumps({"caveats": "activity:DOWNLOAD", "validity": "PT1H"}).encode(), '"caveats"'),
        (json.dumps({"caveats": [1], "validity": "PT1H"}).encode(), '"caveats"'),
        (json.dumps({"caveats": ["activity:DOWNLOAD"]}).encode(), '"validity"'),
        (json.dumps({"caveats": ["activity:DOWNLOAD"], "validity": 3600}).encode(), '"validity"'),
        (body(validity="1 hour"), "ISO 8601 duration"),
        (body(validity="PT0S"), "at least a second"),
        (body(scope="storage.read:/"), "not 'scope'"),
        (body([]), "activity: caveat"),
        (body(["path:/data"]), "activity: caveat"),
        (body(["activity:FLY"]), "unknown activity 'FLY'"),
        (body(["activity:download"]), "unknown activity"),
        (body(["activity:DOWNLOAD,"]), "unknown activity ''"),
        (body(["activity:DOWNLOAD", "activity:UPLOAD"]), "no activity in common"),
        (body(["activity:DOWNLOAD", "ip:192.0.2.0/24"]), "cannot be honoured"),
        (body(["activity:DOWNLOAD", "root:/data"]), "cannot be honoured"),
        (body(["activity:DOWNLOAD", "nocolon"]), "cannot be honoured"),
        (body(["activity:DOWNLOAD", "path:/elsewhere"]), "path: caveat"),
        (body(["activity:DOWNLOAD", "path:/datax"]), "path: caveat"),
        (body(["activity:DOWNLOAD", "path:/data/a", "path:/data/b"]), "path: caveat"),
        (body(["activity:DOWNLOAD", "path:data/run1"]), "absolute path"),
        (body(["activity:DOWNLOAD", "path:/data/../etc"]), "absolute path"),
        (body(["activity:DOWNLOAD", "before:tomorrow"]), "ISO 8601 time"),
        (body(["activity:DOWNLOAD", "before:2030-01-31T12:00:00"]), "time zone"),
    ],
)
def test_malformed_requests_are_400(data, words):
    with pytest.raises(BadRequest) as caught:
        parse_request(data, "/data")
    assert caught.value.status == 400 and words in caught.value.message, caught.value.message


def test_a_path_caveat_above_the_request_leaves_the_request_s_path():
    assert parse_request(body(["activity:LIST", "path:/"]), "/data/run1").path == "/data/run1"


# --- who may ask for what ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope, activities, beyond",
    [
        ("rw", ("MANAGE", "UPLOAD", "DELETE", "LIST"), None),
        ("rw", ("DOWNLOAD", "UPDATE_METADATA", "STAGE", "READ_METADATA"), None),
        ("ro", ("DOWNLOAD", "LIST", "READ_METADATA", "STAGE"), None),
        ("ro", ("DOWNLOAD", "UPLOAD"), "UPLOAD"),
        ("ro", ("DELETE",), "DELETE"),
        ("ro", ("MANAGE",), "MANAGE"),
        ("ro", ("UPDATE_METADATA",), "UPDATE_METADATA"),
        ("metrics", ("LIST",), "LIST"),
        ("metrics", ("DOWNLOAD",), "DOWNLOAD"),
    ],
)
def test_a_static_token_hands_on_at_most_its_scope(scope, activities, beyond):
    rights = StaticRights(scope, "name")
    assert request(activities).beyond(rights.allows) == beyond


def test_a_wlcg_grant_hands_on_at_most_its_scopes_on_the_path():
    from pyai.web.wlcg_tokens import Grant

    grant = Grant("jdoe", "https://iam.example", (("storage.read", "/data"), ("storage.modify", "/data/out")), NOW)
    assert request(("DOWNLOAD", "LIST"), "/data/run1").beyond(grant.allows) is None
    assert request(("DOWNLOAD",), "/datax").beyond(grant.allows) == "DOWNLOAD"
    assert request(("LIST",), "/other").beyond(grant.allows) == "LIST"  # a stat needs some scope on the path
    assert request(("UPLOAD",), "/data/run1").beyond(grant.allows) == "UPLOAD"
    assert request(("UPLOAD", "DELETE", "MANAGE"), "/data/out/f").beyond(grant.allows) is None  # modify covers create
    assert request(("STAGE",), "/data/run1").beyond(grant.allows) == "STAGE"  # read does not imply stage
