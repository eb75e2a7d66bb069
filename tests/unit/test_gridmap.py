"""Client certificates' DNs: their two forms, the grid-mapfile, the front ends believed, and the request
check that admits a mapped DN (pyai/web/gridmap.py, pyai/web/auth.py)."""

import pytest

from pyai.errors import ConfigError
from pyai.web import auth, gridmap
from pyai.web.gridmap import DnMap, Entry, parse_dn, parse_gridmap, read_gridmap_file
from pyai.web.issued_tokens import IssuedTokens, TokenRequest
from pyai.web.receive import CLOSE_CONNECTION

ALICE = (("C", "CH"), ("O", "Test"), ("CN", "alice"))
LINE = "'\"<DN>\" <scope> [name]' with the scope ro or rw"


# --- the two forms of a DN ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "CN=alice,O=Test,C=CH",  # nginx's $ssl_client_s_dn (RFC 2253)
        "/C=CH/O=Test/CN=alice",  # a grid-mapfile's, nginx's $ssl_client_s_dn_legacy
        "cn=alice,o=Test,c=CH",  # a type's case is no part of it
        "CN = alice , O = Test , C = CH",  # RFC 4514 lets a reader drop these spaces
        "  /C=CH/O=Test/CN=alice  ",
        "CN=alice;O=Test;C=CH",  # RFC 2253's other separator
        "2.5.4.3=alice,OID.2.5.4.10=Test,C=CH",  # types by number
    ],
)
def test_both_forms_read_as_one(text):
    assert parse_dn(text) == ALICE


def test_an_escaped_comma_is_part_of_a_value():
    rfc = parse_dn(r"CN=Doe\, John,O=Example\, Inc.,C=US")
    assert rfc == (("C", "US"), ("O", "Example, Inc."), ("CN", "Doe, John"))
    assert parse_dn("/C=US/O=Example, Inc./CN=Doe, John") == rfc  # the slash form needs no escape for it


def test_other_escapes_of_rfc_2253():
    assert parse_dn(r"CN=a\+b\=c\;d\<e\>\"f\\g\#,O=x") == (("O", "x"), ("CN", 'a+b=c;d<e>"f\\g#'))
    assert parse_dn(r"CN=\ lead and trail\ ,O=x") == (("O", "x"), ("CN", " lead and trail "))  # escaped: kept
    assert parse_dn(r"CN=a\2Cb,O=x") == parse_dn(r"CN=a\,b,O=x")  # a byte in hex


def test_utf8_in_hex_in_both_forms_and_as_text():
    """nginx escapes each byte of UTF-8 as \\XX (OpenSSL's RFC 2253 flags); OpenSSL's slash form as \\xXX."""
    expected = (("C", "DE"), ("CN", "J\u00fcrgen M\u00fcller"))
    assert parse_dn(r"CN=J\C3\BCrgen M\C3\BCller,C=DE") == expected
    assert parse_dn(r"/C=DE/CN=J\xC3\xBCrgen M\xc3\xbcller") == expected
    assert parse_dn("/C=DE/CN=J\u00fcrgen M\u00fcller") == expected
    assert parse_dn("CN=J\u00fcrgen M\u00fcller,C=DE") == expected


def test_a_slash_in_a_value_starts_no_attribute():
    """Host and robot certificates: ``CN=host/pyai.example.org``."""
    dn = parse_dn("/DC=ch/DC=cern/OU=computers/CN=host/pyai.example.org")
    assert dn[-1] == ("CN", "host/pyai.example.org") and len(dn) == 4
    assert parse_dn("CN=host/pyai.example.org,OU=computers,DC=cern,DC=ch") == dn


def test_several_attributes_of_one_type_keep_their_order():
    dn = parse_dn("/DC=org/DC=example/OU=People/CN=Robot: FTS/CN=123456")
    assert dn == parse_dn("CN=123456,CN=Robot: FTS,OU=People,DC=example,DC=org")
    assert dn != parse_dn("/DC=org/DC=example/OU=People/CN=123456/CN=Robot: FTS")


def test_a_multi_valued_rdn_reads_as_openssl_prints_it():
    """OpenSSL's RFC 2253 printer reverses every attribute, the members of a '+' set too."""
    assert parse_dn("UID=jdoe+CN=John Doe,O=x") == parse_dn("/O=x/CN=John Doe/UID=jdoe")


@pytest.mark.parametrize(
    "alias, canonical",
    [("E=a@b.c", "emailAddress=a@b.c"), ("Email=a@b.c", "1.2.840.113549.1.9.1=a@b.c"), ("userid=x", "UID=x")],
)
def test_type_aliases(alias, canonical):
    assert parse_dn(alias + ",O=x") == parse_dn(canonical + ",O=x")


def test_values_are_exact():
    assert parse_dn("CN=Alice,O=Test,C=CH") != ALICE  # a value's case is part of it
    assert parse_dn("/C=CH/O=Test/CN=alice ") == ALICE  # (a slash form's trailing space is the line's)
    assert parse_dn("/C=CH/O=Test /CN=alice") != ALICE


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("alice", "no attribute"),
        ("CN=alice,", "ends in a separator"),
        ("CN=alice,,O=x", "no attribute type"),
        ("=alice", "no type"),
        ("C N=alice", "no attribute type"),
        ("1x=alice", "no attribute type"),
        ("CN=alice\\", "lone"),
        ("CN=\\FF", "not UTF-8"),
        ("/", "ends in '/'"),
        ("/CN", "no attribute"),
        ("/1x=a/CN=b", "no attribute type"),
        ("/CN=\\xFF", "not UTF-8"),
    ],
)
def test_bad_dns(text, words):
    with pytest.raises(ValueError, match=words):
        parse_dn(text)


def test_the_slash_form_for_people():
    assert gridmap.slash_form(parse_dn(r"CN=Doe\, John,O=x")) == "/O=x/CN=Doe, John"


# --- the grid-mapfile ----------------------------------------------------------------------------


def test_lines_comments_names_and_both_forms():
    lines = [
        "# the archive's X.509 clients",
        "",
        '"/C=CH/O=Test/CN=alice" rw alice   # ingest',
        '  "CN=bob,O=Test,C=CH"   ro',
        '"/C=CH/O=Test/CN=carol # not a comment" ro carol',
        "\t",
    ]
    entries = parse_gridmap(lines)
    bob = (("C", "CH"), ("O", "Test"), ("CN", "bob"))
    assert entries[0] == Entry(ALICE, "rw", "dn:alice")
    assert entries[1] == Entry(bob, "ro", gridmap.default_name(bob))
    assert entries[2].dn[-1] == ("CN", "carol # not a comment") and entries[2].name == "dn:carol"


def test_the_default_name_is_a_short_digest_of_the_dn():
    name = gridmap.default_name(ALICE)
    assert name.startswith("dn:sha256:") and len(name) == len("dn:sha256:") + 8
    assert gridmap.default_name(ALICE[:2]) != name
    assert parse_gridmap(['"CN=alice,O=Test,C=CH" rw'])[0].name == parse_gridmap(['"/C=CH/O=Test/CN=alice" ro'])[0].name


def test_a_quote_in_a_dn():
    entry = parse_gridmap([r'"/O=x/CN=say \"hi\"" ro'])[0]
    assert entry.dn == (("O", "x"), ("CN", 'say "hi"'))
    assert parse_gridmap([r'"CN=say \"hi\",O=x" ro'])[0].dn == entry.dn


def test_names_may_repeat():
    """One person's old and new certificate: one name in the log, two DNs."""
    entries = parse_gridmap(['"/O=x/CN=alice" rw alice', '"/O=y/CN=alice" rw alice'])
    assert [entry.name for entry in entries] == ["dn:alice", "dn:alice"]


@pytest.mark.parametrize(
    "lines, message",
    [
        (["/C=CH/CN=alice rw"], f"line 1: expected {LINE}"),
        (['"/C=CH/CN=alice rw'], "line 1: the DN's closing quote is missing"),
        (['"/C=CH/CN=alice"rw'], f"line 1: expected {LINE}"),
        (['"/C=CH/CN=alice"'], f"line 1: expected {LINE}"),
        (['"/C=CH/CN=alice" RW'], f"line 1: expected {LINE}"),
        (['"/C=CH/CN=alice" metrics'], f"line 1: expected {LINE}"),  # a scraper has a token
        (['"/C=CH/CN=alice" rw alice extra'], f"line 1: expected {LINE}"),
        (["", "# x", '"/C=CH/CN=alice" rw al/ice'], "line 3: a name is 1 to 64 of letters, digits and - . _"),
        (['"/C=CH/CN=alice" rw ' + "a" * 65], "line 1: a name is 1 to 64"),
        (['"/C=CH/CN=alice" rw dn:alice'], "line 1: a name is 1 to 64"),
        (['"CN=alice,O=x," rw'], "line 1: bad DN: the DN ends in a separator"),
        (['"" rw'], "line 1: bad DN: the DN is empty"),
        (['"/O=x/CN=alice" rw', "", '"CN=alice,O=x" ro'], "line 3: the DN is mapped already, by line 1"),
        ([], f"it maps no DN ({LINE})"),
        (["# only comments", ""], "it maps no DN"),
    ],
)
def test_bad_lines_are_named(lines, message):
    with pytest.raises(ValueError) as caught:
        parse_gridmap(lines)
    assert str(caught.value).startswith(message), str(caught.value)


def write_gridmap(path, text, mode=0o644):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o444, 0o640])
def test_a_file_only_its_owner_writes_is_read(tmp_path, mode):
    path = write_gridmap(tmp_path / "grid-mapfile", '"/C=CH/O=Test/CN=alice" rw alice\r\n', mode)
    assert read_gridmap_file(path) == [Entry(ALICE, "rw", "dn:alice")]


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666, 0o620])
def test_a_file_others_may_write_is_refused(tmp_path, mode):
    path = write_gridmap(tmp_path / "grid-mapfile", '"/C=CH/O=Test/CN=alice" rw\n', mode)
    with pytest.raises(ConfigError) as caught:
        read_gridmap_file(path)
    message = str(caught.value)
    assert path in message and f"{mode:04o}" in message and "chmod go-w" in message


def test_a_bad_file_is_one_line_naming_the_file_and_the_line(tmp_path):
    path = write_gridmap(tmp_path / "grid-mapfile", '"/C=CH/CN=a" rw\n"/C=CH/CN=b" rx\n')
    with pytest.raises(ConfigError) as caught:
        read_gridmap_file(path)
    assert str(caught.value) == f"bad grid-mapfile {path}: line 2: expected {LINE}"
    path = write_gridmap(tmp_path / "latin1", b'"/C=CH/CN=a" rw\n"/C=DE/CN=J\xfcrgen" rw\n')
    with pytest.raises(ConfigError, match=r"latin1: line 2: not UTF-8$"):
        read_gridmap_file(path)


def test_a_missing_file_and_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the grid-mapfile .*missing"):
        read_gridmap_file(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a regular file|cannot read"):
        read_gridmap_file(str(tmp_path))


# --- the front ends believed, and the request's DN ------------------------------------------------

ENTRIES = parse_gridmap(
    ['"/C=CH/O=Test/CN=alice" rw alice', '"CN=bob,O=Test,C=CH" ro bob', r'"/C=CH/O=Test/CN=Doe, John" rw']
)
DNS = DnMap("X-SSL-Client-DN", ["127.0.0.1/32", "10.1.0.0/16", "2001:db8::/32"], ENTRIES)
KEY = "HTTP_X_SSL_CLIENT_DN"


def test_the_header_is_read_from_its_environ_key():
    assert gridmap.environ_key("X-SSL-Client-DN") == KEY and DNS.key == KEY
    assert len(DNS) == 3


@pytest.mark.parametrize(
    "address, trusted",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("10.1.200.3", True),
        ("10.2.0.1", False),
        ("::ffff:127.0.0.1", True),  # a dual-stack bind's view of an IPv4 peer
        ("::ffff:10.2.0.1", False),
        ("2001:db8::7", True),
        ("2001:db9::7", False),
        ("::1", False),
        ("", False),  # a unix socket's peer
        ("not an address", False),
    ],
)
def test_trusted_front_ends(address, trusted):
    assert DNS.trusts(address) is trusted


def test_a_dn_is_believed_only_from_a_front_end():
    assert DNS.presented({"REMOTE_ADDR": "127.0.0.1", KEY: "CN=x"}) == "CN=x"
    assert DNS.presented({"REMOTE_ADDR": "127.0.0.2", KEY: "CN=x"}) is None
    assert DNS.presented({"REMOTE_ADDR": "127.0.0.1", KEY: ""}) is None  # no certificate verified
    assert DNS.presented({"REMOTE_ADDR": "127.0.0.1"}) is None
    assert DNS.presented({KEY: "CN=x"}) is None


def test_find_takes_either_form():
    assert DNS.find("CN=alice,O=Test,C=CH") is ENTRIES[0]
    assert DNS.find("/C=CH/O=Test/CN=bob") is ENTRIES[1]
    assert DNS.find(r"CN=Doe\, John,O=Test,C=CH") is ENTRIES[2]
    assert DNS.find("CN=mallory,O=Test,C=CH") is None
    assert DNS.find("CN=alice,O=Test,C=CH,") is None  # no DN at all: mapped not


# --- the request check -------------------------------------------------------------------------------

RW = "read+write/token_0000000002=="
TOKENS = auth.Tokens([("rw", RW, "ingest")])


def via_front(dn, **environ):
    return {"REMOTE_ADDR": "127.0.0.1", KEY: dn, **environ}


def refusal(method, environ, tokens=TOKENS, dns=DNS):
    try:
        auth.check(tokens, method, "/x", environ, dns=dns)
    except auth.ArchiveError as exc:
        return exc
    return None


def test_the_scopes_are_the_static_tokens():
    assert (gridmap.READ, gridmap.WRITE) == (auth.READ, auth.WRITE)


@pytest.mark.parametrize("dn", ["CN=alice,O=Test,C=CH", "/C=CH/O=Test/CN=alice"])
def test_a_mapped_dn_is_admitted_as_a_static_token_of_its_scope(dn):
    environ = via_front(dn)
    assert auth.check(TOKENS, "PUT", "/x", environ, dns=DNS) == "dn:alice"
    assert auth.rights_of(environ) == auth.StaticRights("rw", "dn:alice")
    assert gridmap.entry_of(environ) is ENTRIES[0]


def test_a_dn_without_a_name_is_logged_by_its_digest():
    environ = via_front(r"CN=Doe\, John,O=Test,C=CH")
    assert auth.check(TOKENS, "DELETE", "/x", environ, dns=DNS) == ENTRIES[2].name
    assert ENTRIES[2].name.startswith("dn:sha256:")


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PROPFIND"])
def test_a_read_only_dn_reads_and_stages(method):
    assert refusal(method, via_front("CN=bob,O=Test,C=CH")) is None


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_a_read_only_dn_cannot_write(method):
    exc = refusal(method, via_front("CN=bob,O=Test,C=CH"))
    assert isinstance(exc, auth.InsufficientScope) and exc.status == 403
    assert exc.message == f"the client certificate's DN is mapped read-only and {method} changes the archive"
    assert exc.headers["WWW-Authenticate"] == 'Bearer realm="pyai", error="insufficient_scope"'


def test_an_unmapped_dn_is_401():
    environ = via_front("CN=mallory,O=Test,C=CH")
    exc = refusal("GET", environ)
    assert isinstance(exc, auth.Unauthorized) and exc.status == 401
    assert exc.message == "the client certificate's DN is not mapped here" and exc.detail == "unmapped DN"
    assert exc.headers == {"WWW-Authenticate": 'Bearer realm="pyai"'}
    assert auth.RIGHTS not in environ and gridmap.ENTRY not in environ


def test_a_dn_from_another_peer_is_not_believed():
    exc = refusal("GET", via_front("CN=alice,O=Test,C=CH", REMOTE_ADDR="127.0.0.2"))
    assert isinstance(exc, auth.Unauthorized) and exc.detail == "no token"
    assert "or a client certificate it knows" in exc.message


def test_without_a_dn_map_the_header_is_nothing():
    exc = refusal("GET", via_front("CN=alice,O=Test,C=CH"), dns=None)
    assert isinstance(exc, auth.Unauthorized) and "client certificate" not in exc.message


def test_a_dn_alone_authenticates_without_static_tokens():
    assert auth.check(None, "PUT", "/x", via_front("CN=alice,O=Test,C=CH"), dns=DNS) == "dn:alice"


def test_a_token_beside_a_certificate_is_the_one_checked():
    """The token decides, good or bad: a bad one is not rescued by the certificate."""
    environ = via_front("CN=bob,O=Test,C=CH", HTTP_AUTHORIZATION=f"Bearer {RW}")
    assert auth.check(TOKENS, "PUT", "/x", environ, dns=DNS) == "ingest"
    assert gridmap.ENTRY not in environ
    exc = refusal("GET", via_front("CN=alice,O=Test,C=CH", HTTP_AUTHORIZATION="Bearer not-a-configured-token"))
    assert isinstance(exc, auth.Unauthorized) and exc.detail == "unknown token"
    exc = refusal("GET", via_front("CN=alice,O=Test,C=CH", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz"))
    assert isinstance(exc, auth.Unauthorized) and exc.detail == "malformed Authorization"


def test_the_open_health_check_asks_for_nothing():
    assert auth.check(TOKENS, "GET", "/", via_front("CN=mallory,O=Test,C=CH"), dns=DNS) is None


def test_a_refused_upload_closes_the_connection():
    environ = via_front("CN=mallory,O=Test,C=CH", CONTENT_LENGTH="5")
    environ["wsgi.input"] = type("Body", (), {"failed": False})()
    assert isinstance(refusal("PUT", environ), auth.Unauthorized)
    assert environ.get(CLOSE_CONNECTION)


def test_a_mapped_dn_may_ask_for_a_token_issued_here():
    """A grid client with a certificate asks for a token for its job (pyai.web.issued_tokens)."""
    issued = IssuedTokens(b"k" * 32)
    request = TokenRequest(("DOWNLOAD",), "/data", 600)
    for name in ("dn:alice", gridmap.default_name(ALICE)):
        token, _ = issued.issue(name, request)
        assert issued.verify(token).name == "issued:" + name


def test_each_dn_owns_its_tape_requests():
    assert ENTRIES[0].owner != ENTRIES[1].owner
    assert Entry(ALICE, "ro", "dn:a").owner == Entry(ALICE, "rw", "dn:b").owner  # the DN, whatever its name
