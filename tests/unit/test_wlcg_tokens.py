"""WLCG profile JWTs (pyai/web/wlcg_tokens.py) against a real issuer over real https (tests/fixtures/issuer.py)."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fixtures.issuer import AUDIENCE

from pyai.web.wlcg_tokens import (
    MAX_TOKEN_LENGTH,
    WILDCARD_AUDIENCE,
    Grant,
    KeysUnavailable,
    TokenRejected,
    WlcgTokens,
    looks_like_jwt,
)


@pytest.fixture
def make_verifier(issuer):
    """``make_verifier(issuers=None, audiences=(AUDIENCE,), ca_file=None, **options)``: a started
    WlcgTokens, by default for ``issuer`` with the base path ``/`` and its CA; closed at the end."""
    made = []

    def make(issuers=None, audiences=(AUDIENCE,), ca_file=None, **options):
        verifier = WlcgTokens(
            issuers or [(issuer.url, "/")], audiences, issuer.ca_file if ca_file is None else ca_file, **options
        )
        made.append(verifier)
        verifier.start()
        return verifier

    yield make
    for verifier in made:
        verifier.close()


@pytest.fixture
def verifier(make_verifier):
    return make_verifier()


def rejected(verifier, token, match):
    """The TokenRejected of ``token``, whose reason matches ``match`` and quotes nothing of the token."""
    with pytest.raises(TokenRejected, match=match) as caught:
        verifier.verify(token)
    for part in token.split("."):
        assert not part or part not in caught.value.reason
    return caught.value


# --- the form and the algorithms ------------------------------------------------------


@pytest.mark.parametrize(
    "token, expected",
    [
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", True),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", True),  # alg none: a JWT, to be rejected as one
        ("read-only-token-000000000001", False),
        ("a.b", False),
        ("a.b.c.d", False),
        ("a+b.c.d", False),  # base64, not base64url
        ("a.b.c==", False),
        (".b.c", False),
        ("", False),
    ],
)
def test_looks_like_jwt(token, expected):
    assert looks_like_jwt(token) is expected


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_rs256_and_es256_tokens_are_accepted(issuer, verifier, alg):
    token = issuer.token(alg=alg, scope="openid storage.read:/data storage.create:/data/in compute.create")
    grant = verifier.verify(token)
    assert grant.subject == "user-1" and grant.issuer == issuer.url
    assert grant.scopes == (("storage.read", "/data"), ("storage.create", "/data/in"))
    assert grant.expires > time.time()
    assert grant.name == "jwt:127.0.0.1:user-1"


@pytest.mark.parametrize("alg, kid", [("HS256", None), ("HS256", "rsa"), ("none", None), ("none", "rsa")])
def test_hs256_and_none_are_rejected(issuer, verifier, alg, kid):
    token = issuer.token(alg=alg, kid=issuer.rsa_kid if kid else None)
    rejected(verifier, token, "algorithm not accepted")


def test_the_header_alg_must_fit_the_type_of_its_key(issuer, verifier):
    rejected(verifier, issuer.token(alg="ES256", kid=issuer.rsa_kid), "does not fit the type of the key")
    rejected(verifier, issuer.token(alg="RS256", kid=issuer.ec_kid), "does not fit the type of the key")


def test_a_bad_signature_is_rejected(issuer, verifier):
    header, _, signature = issuer.token(sub="alice").split(".")
    payload = issuer.token(sub="mallory").split(".")[1]
    rejected(verifier, f"{header}.{payload}.{signature}", "bad signature")


def test_malformed_tokens_are_rejected(issuer, verifier):
    rejected(verifier, "not-a-jwt", "not a JWT")
    rejected(verifier, "abc.def.ghi", "malformed JWT")
    rejected(verifier, issuer.token(kid=""), "names no key")
    rejected(verifier, issuer.token(sub="x" * MAX_TOKEN_LENGTH), "too long")


# --- the claims -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        AUDIENCE,
        ["https://other.example", AUDIENCE],
        f"host1.example {AUDIENCE} host2.example",  # Rucio: bare names, space-joined
    ],
)
def test_a_configured_audience_is_accepted(issuer, verifier, aud):
    verifier.verify(issuer.token(aud=aud))


@pytest.mark.parametrize(
    "aud, reason",
    [
        ("https://other.example", "audience"),
        (["https://other.example"], "audience"),
        ([], "audience"),
        (f"{AUDIENCE}x", "audience"),
        (WILDCARD_AUDIENCE, "audience"),  # not configured: not accepted
        (7, "aud is neither"),
        ([AUDIENCE, 7], "aud is neither"),
    ],
)
def test_another_audience_is_rejected(issuer, verifier, aud, reason):
    rejected(verifier, issuer.token(aud=aud), reason)


def test_the_wildcard_audience_only_when_configured(issuer, make_verifier):
    verifier = make_verifier(audiences=[AUDIENCE, WILDCARD_AUDIENCE])
    verifier.verify(issuer.token(aud=WILDCARD_AUDIENCE))
    verifier.verify(issuer.token(aud=["pyai.test", WILDCARD_AUDIENCE]))


def test_expiry_with_leeway(issuer, make_verifier):
    verifier = make_verifier()  # leeway 60 s
    verifier.verify(issuer.token(exp_in=-30))
    rejected(verifier, issuer.token(exp_in=-120), "expired")
    strict = make_verifier(leeway=0)
    rejected(strict, issuer.token(exp_in=-30), "expired")


def test_not_before_and_issued_at(issuer, verifier):
    verifier.verify(issuer.token(nbf_in=30))
    rejected(verifier, issuer.token(nbf_in=300), "not valid yet")
    rejected(verifier, issuer.token(claims={"iat": int(time.time()) + 300}), "not valid yet")


@pytest.mark.parametrize("claim", ["sub", "exp", "aud", "wlcg.ver"])
def test_required_claims(issuer, verifier, claim):
    rejected(verifier, issuer.token(omit=[claim]), f"has no {claim} claim")


def test_iat_and_jti_may_be_absent(issuer, verifier):
    verifier.verify(issuer.token(omit=["iat", "jti"]))


@pytest.mark.parametrize(
    "claims, reason",
    [
        (lambda: {"sub": ""}, "sub"),
        # made when the test runs: a time taken at collection may be past by then
        (lambda: {"exp": str(int(time.time()) + 600)}, "exp is not a number"),
        (lambda: {"nbf": True}, "nbf is not a number"),
        (lambda: {"scope": ["storage.read:/data"]}, "scope is not a string"),
    ],
    ids=["sub", "exp", "nbf", "scope"],
)
def test_claims_of_the_wrong_type(issuer, verifier, claims, reason):
    rejected(verifier, issuer.token(claims=claims()), reason)


def test_an_unknown_issuer_is_rejected(issuer, verifier):
    rejected(verifier, issuer.token(claims={"iss": "https://elsewhere.example"}), "unknown issuer")
    rejected(verifier, issuer.token(claims={"iss": issuer.url.replace("https:", "http:")}), "unknown issuer")
    rejected(verifier, issuer.token(omit=["iss"]), "unknown issuer")


def test_a_trailing_slash_names_the_same_issuer(issuer, make_verifier):
    make_verifier().verify(issuer.token(claims={"iss": issuer.url + "/"}))
    grant = make_verifier(issuers=[(issuer.url + "/", "/")]).verify(issuer.token())
    assert grant.issuer == issuer.url + "/"


@pytest.mark.parametrize("version", ["1.0", "1", "1.2"])
def test_wlcg_ver_1_is_accepted(issuer, verifier, version):
    verifier.verify(issuer.token(claims={"wlcg.ver": version}))


@pytest.mark.parametrize("version", ["2.0", "2", "0.1", "10.0", 1.0, ""])
def test_wlcg_ver_other_than_1_is_rejected(issuer, verifier, version):
    rejected(verifier, issuer.token(claims={"wlcg.ver": version}), "wlcg.ver")


# --- scopes and paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    "scope, reason",
    [
        ("storage.read", "no path"),
        ("storage.read:", "no path"),
        ("openid storage.poll", "no path"),
        ("storage.create:data/in", "relative path"),
        ("storage.read:/data storage.modify:/data/../etc", r"'\.\.'"),
        ("storage.stage:/..", r"'\.\.'"),
    ],
)
def test_a_bad_storage_scope_rejects_the_token(issuer, verifier, scope, reason):
    rejected(verifier, issuer.token(scope=scope), reason)


def test_other_scopes_grant_nothing(issuer, verifier):
    assert verifier.verify(issuer.token(scope="openid offline_access compute.read wlcg.groups")).scopes == ()
    assert verifier.verify(issuer.token(scope=None)).scopes == ()


def test_scopes_are_beneath_the_base_path_of_their_issuer(issuer, make_verifier):
    verifier = make_verifier(issuers=[(issuer.url, "/vo")])
    grant = verifier.verify(
        issuer.token(scope="storage.read:/x storage.modify:/ storage.stage:/x/tape/ storage.poll:/")
    )
    assert grant.scopes == (
        ("storage.read", "/vo/x"),
        ("storage.modify", "/vo"),
        ("storage.stage", "/vo/x/tape"),
        ("storage.poll", "/vo"),
    )
    assert grant.allows(["storage.read"], "/vo/x") and grant.allows(["storage.read"], "/vo/x/file")
    assert not grant.allows(["storage.read"], "/x") and not grant.allows(["storage.read"], "/vo/xy")
    assert grant.allows(["storage.modify"], "/vo/anything") and not grant.allows(["storage.modify"], "/elsewhere")
    assert not grant.allows(["storage.modify"], "/vo/../elsewhere")


def test_each_issuer_has_its_base_path(make_issuer, make_verifier):
    first, second = make_issuer(), make_issuer(path="/realm")
    verifier = make_verifier(issuers=[(first.url, "/a"), (second.url, "/b/")])
    assert verifier.verify(first.token(scope="storage.read:/x")).scopes == (("storage.read", "/a/x"),)
    grant = verifier.verify(second.token(scope="storage.read:/x"))
    assert grant.scopes == (("storage.read", "/b/x"),) and grant.issuer == second.url


def test_a_scope_covers_its_path_and_beneath_it_by_whole_components():
    grant = Grant("s", "https://iam.example", (("storage.read", "/foo"), ("storage.create", "/in/")), 0.0)
    for path in ("/foo", "/foo/", "/foo/bar", "//foo//bar/./baz"):
        assert grant.allows(["storage.read"], path), path
    for path in ("/foobar", "/fo", "/", "/bar/foo", "foo", "/foo/../etc", ""):
        assert not grant.allows(["storage.read"], path), path
    assert grant.allows("storage.create", "/in") and grant.allows(["storage.read", "storage.create"], "/in/x")
    assert not grant.allows(["storage.create"], "/foo") and not grant.allows([], "/foo")
    assert grant.any_storage_scope("/in/x") and grant.any_storage_scope("/foo")
    assert not grant.any_storage_scope("/elsewhere")


def test_root_scope_covers_everything():
    grant = Grant("s", "https://iam.example", (("storage.stage", "/"),), 0.0)
    assert grant.allows(["storage.stage"], "/") and grant.allows(["storage.stage"], "/any/path")
    assert not grant.allows(["storage.read"], "/any/path")


def test_the_name_holds_only_safe_characters():
    grant = Grant("a b/c\n" + "x" * 200, "https://iam.example:8443/realm", (), 0.0)
    assert grant.name == "jwt:iam.example:a_b_c_" + "x" * 58


# --- keys -----------------------------------------------------------------------------


def test_an_unknown_kid_refetches_once_a_window(issuer, verifier):
    verifier.verify(issuer.token())  # waits for the fetch at start
    assert issuer.jwks_fetches == 1
    rejected(verifier, issuer.unpublished_token(), "kid")
    assert issuer.jwks_fetches == 2
    rejected(verifier, issuer.unpublished_token(), "kid")  # another unknown kid within refetch_interval
    issuer.add_key("ES256")
    rejected(verifier, issuer.token(alg="ES256"), "kid")  # published now, but not fetched before the window ends
    assert issuer.jwks_fetches == 2


def test_a_rotated_key_verifies_after_one_refetch(issuer, verifier):
    old = issuer.token(alg="ES256")
    verifier.verify(old)
    issuer.rotate("ES256")
    verifier.verify(issuer.token(alg="ES256"))
    assert issuer.jwks_fetches == 2
    rejected(verifier, old, "kid")  # the issuer dropped it: so does the verifier
    verifier.verify(issuer.token(alg="RS256"))  # the keys not rotated stay
    assert issuer.jwks_fetches == 2


def test_the_keys_are_refreshed_in_the_background(issuer, make_verifier):
    verifier = make_verifier(refresh_interval=0.05)
    verifier.verify(issuer.token())
    deadline = time.monotonic() + 10
    while issuer.jwks_fetches < 3:
        assert time.monotonic() < deadline, "no refresh"
        time.sleep(0.01)
    verifier.verify(issuer.token())


def test_an_issuer_that_goes_down_keeps_its_keys(issuer, make_verifier, caplog):
    verifier = make_verifier(refetch_interval=1e-6)
    good = issuer.token()
    verifier.verify(good)
    issuer.stop()
    with caplog.at_level(logging.WARNING, logger="pyai"):
        rejected(verifier, issuer.unpublished_token(), "kid")  # its refetch fails
    assert "cannot fetch the token keys" in caplog.text and "its 2 known keys stay in use" in caplog.text
    verifier.verify(good)
    verifier.verify(issuer.token(alg="ES256"))


def test_an_issuer_down_from_the_start_makes_keys_unavailable(issuer, make_verifier):
    issuer.stop()
    verifier = make_verifier(refetch_interval=1e-6)
    with pytest.raises(KeysUnavailable) as caught:
        verifier.verify(issuer.token())
    assert caught.value.retry_after >= 1 and caught.value.issuer == issuer.url
    issuer.start()  # back: the next token's refetch finds its keys
    verifier.verify(issuer.token())


def test_a_hanging_issuer_does_not_hold_the_request(issuer, make_verifier):
    issuer.hold()
    verifier = make_verifier(timeout=1, wait=0.2)
    with pytest.raises(KeysUnavailable):
        verifier.verify(issuer.token())


@pytest.mark.parametrize("send_length", [True, False])
def test_a_jwks_over_the_size_cap_is_refused(issuer, make_verifier, send_length):
    issuer.jwks_padding, issuer.send_length = 1 << 20, send_length
    verifier = make_verifier(refetch_interval=1e-6)  # the cap: 1 MiB
    with pytest.raises(KeysUnavailable):
        verifier.verify(issuer.token())
    issuer.jwks_padding = 1000
    verifier.verify(issuer.token())


@pytest.mark.parametrize(
    "metadata", [{"jwks_uri": "http://127.0.0.1:1/jwks"}, {"jwks_uri": None}, {"issuer": "https://other.example"}]
)
def test_bad_metadata_gives_no_keys(issuer, make_verifier, metadata):
    issuer.metadata.update(metadata)
    with pytest.raises(KeysUnavailable):
        make_verifier().verify(issuer.token())


def test_the_issuer_certificate_is_checked(issuer, make_verifier):
    with pytest.raises(KeysUnavailable):
        make_verifier(ca_file="").verify(issuer.token())  # the system's CAs do not know the test CA


def test_concurrent_requests_share_one_fetch(issuer, verifier):
    tokens = [issuer.token(alg="RS256" if n % 2 else "ES256", sub=f"user-{n}") for n in range(16)]
    with ThreadPoolExecutor(8) as pool:
        grants = list(pool.map(verifier.verify, tokens))
    assert [grant.subject for grant in grants] == [f"user-{n}" for n in range(16)]
    assert issuer.jwks_fetches == 1


def test_verify_needs_start(issuer):
    with pytest.raises(RuntimeError, match="start"):
        WlcgTokens([(issuer.url, "/")], [AUDIENCE], issuer.ca_file).verify(issuer.token())


# --- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "issuers, audiences, options, message",
    [
        ([("http://127.0.0.1:8443", "/")], [AUDIENCE], {}, "not an https URL"),
        ([("127.0.0.1:8443", "/")], [AUDIENCE], {}, "not an https URL"),
        ([("https://user@iam.example", "/")], [AUDIENCE], {}, "https://host"),
        ([("https://iam.example:http", "/")], [AUDIENCE], {}, "bad port"),
        ([("https://iam.example", "vo")], [AUDIENCE], {}, "base path"),
        ([("https://iam.example", "/vo/../x")], [AUDIENCE], {}, "base path"),
        ([("https://iam.example", "/a"), ("https://iam.example/", "/b")], [AUDIENCE], {}, "twice"),
        ([], [AUDIENCE], {}, "no token issuer"),
        ([("https://iam.example", "/")], [], {}, "no token audience"),
        ([("https://iam.example", "/")], ["a b"], {}, "space"),
        ([("https://iam.example", "/")], [AUDIENCE], {"leeway": 61}, "leeway"),
        ([("https://iam.example", "/")], [AUDIENCE], {"timeout": 0}, "timeout"),
    ],
)
def test_bad_settings_are_refused(issuers, audiences, options, message):
    with pytest.raises(ValueError, match=message):
        WlcgTokens(issuers, audiences, **options)


def test_a_ca_file_that_cannot_be_read_is_refused(tmp_path):
    with pytest.raises(ValueError, match="CA file"):
        WlcgTokens([("https://iam.example", "/")], [AUDIENCE], str(tmp_path / "missing.pem"))
    (tmp_path / "empty.pem").write_text("no certificate\n")
    with pytest.raises(ValueError, match="CA file"):
        WlcgTokens([("https://iam.example", "/")], [AUDIENCE], str(tmp_path / "empty.pem"))


def test_a_forked_child_fetches_and_verifies_on_its_own(make_verifier, issuer):
    """gunicorn --preload forks workers from a master that built the app: the child needs its
    own thread (and lock) to fetch keys, and a key the parent never saw must still verify."""
    import os

    verifier = make_verifier()
    assert verifier.verify(issuer.token()).subject == "user-1"
    issuer.rotate("ES256")  # a kid the parent has not fetched
    token = issuer.token(alg="ES256")
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only when the new key verifies
        try:
            code = 0 if verifier.verify(token).subject == "user-1" else 1
        except BaseException:  # noqa: BLE001 - the child must exit, whatever went wrong
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
