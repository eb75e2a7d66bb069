"""Token files, token comparison, the request check, the token secret file and the exposure warning
(pyai/web/auth.py)."""

import logging
import os
import time

import pytest

from pyai.config import load
from pyai.errors import ConfigError
from pyai.web import auth, scopes
from pyai.web.issued_tokens import IssuedGrant, IssuedTokens, mint
from pyai.web.receive import CLOSE_CONNECTION

RO = "read-only-token-000000000001"
RW = "read+write/token_0000000002=="
MT = "metrics-scraper-token-0000003"
LINE = "'<scope> <token> [name]' with the scope ro, rw or metrics"


def write_tokens(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


# --- parsing ------------------------------------------------------------------------


def test_scopes_comments_and_blank_lines():
    lines = ["# tokens of the archive", "", f"ro {RO}", f"  rw   {RW}   # cartd on host x", "\t", "# end"]
    assert auth.parse_tokens(lines) == [("ro", RO, auth.default_name(RO)), ("rw", RW, auth.default_name(RW))]


def test_names_and_the_metrics_scope():
    lines = [f"ro {RO} cartd", f"metrics {MT} prometheus.1 # the scraper", f"rw {RW} ingest_A-2"]
    assert auth.parse_tokens(lines) == [("ro", RO, "cartd"), ("metrics", MT, "prometheus.1"), ("rw", RW, "ingest_A-2")]


def test_the_default_name_is_a_short_digest():
    import hashlib

    name = auth.default_name(RO)
    assert name == "sha256:" + hashlib.sha256(RO.encode()).hexdigest()[:8]
    assert RO not in name and auth.default_name(RW) != name


@pytest.mark.parametrize("name", ["x" * 65, "sha256:0123abcd", "caf\u00e9", "a/b", "a+b", "a=b"])
def test_bad_names_are_refused_without_echo(name):
    with pytest.raises(ValueError, match="line 1: a name is 1 to 64") as caught:
        auth.parse_tokens([f"rw {RW} {name}"])
    assert RW not in str(caught.value) and name not in str(caught.value)


def test_a_comment_after_the_token_is_no_name():
    assert auth.parse_tokens([f"rw {RW}#cartd"]) == [("rw", RW, auth.default_name(RW))]


def test_a_name_twice_is_refused_naming_both_lines():
    with pytest.raises(ValueError) as caught:
        auth.parse_tokens([f"ro {RO} cartd", "", f"rw {RW} cartd"])
    message = str(caught.value)
    assert message == "line 3: its name is taken by line 1 (names must differ)"
    assert RW not in message and RO not in message


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "tokens"
    path.write_bytes(f"ro {RO}\r\nrw {RW}\r\n".encode())
    path.chmod(0o600)
    tokens = auth.read_tokens_file(str(path))
    assert (tokens.scope_of(RO), tokens.scope_of(RW)) == ("ro", "rw")


@pytest.mark.parametrize(
    "line, words",
    [
        (f"rx {RO}", LINE),
        (f"RW {RO}", LINE),
        (f"Metrics {RO}", LINE),
        ("rw", LINE),
        (RO, LINE),
        (f"rw {RO} cartd extra", LINE),
        ("rw short-token", "at least 16 characters"),
        ('rw quoted"token-0000000000', "may only hold"),
        ("rw token-with-ä-0000000000", "may only hold"),
        ("rw ==leading-equals-0000000", "may only hold"),
    ],
)
def test_bad_line_is_named_without_its_token(line, words):
    with pytest.raises(ValueError) as caught:
        auth.parse_tokens(["# first", line])
    message = str(caught.value)
    assert message.startswith("line 2: ") and words in message, message
    for field in line.split()[1:]:
        assert field not in message  # a token never appears in a message


def test_a_token_twice_is_refused():
    with pytest.raises(ValueError, match="line 2: the token appears twice") as caught:
        auth.parse_tokens([f"ro {RO}", f"rw {RO}"])
    assert RO not in str(caught.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_a_file_without_tokens_is_refused(tmp_path, text):
    path = write_tokens(tmp_path / "tokens", text)
    with pytest.raises(ConfigError, match="holds no token"):
        auth.read_tokens_file(str(path))


# --- the file ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_private_modes_are_accepted(tmp_path, mode):
    path = write_tokens(tmp_path / "tokens", f"rw {RW}\n", mode)
    assert len(auth.read_tokens_file(str(path))) == 1


# Open to everyone, or writable by the group (a member could add an rw token): refused alike,
# the message saying which and the chmod that puts it right.
SAYS = {"everyone": ["o-rwx on it"], "group": ["writable by its group", "chmod g-w,o-rwx"]}


@pytest.mark.parametrize(
    "mode, who",
    [(mode, "everyone") for mode in (0o644, 0o604, 0o602, 0o666, 0o777)]
    + [(mode, "group") for mode in (0o660, 0o620, 0o670, 0o460)],
)
def test_modes_others_may_use_are_refused(tmp_path, mode, who):
    path = write_tokens(tmp_path / "tokens", f"rw {RW}\n", mode)
    with pytest.raises(ConfigError) as caught:
        auth.read_tokens_file(str(path))
    message = str(caught.value)
    assert str(path) in message and f"{mode:04o}" in message
    assert all(words in message for words in SAYS[who]), message
    assert "\n" not in message and RW not in message


def test_a_symlink_is_judged_by_the_file_it_names(tmp_path):
    target = write_tokens(tmp_path / "real", f"rw {RW}\n", 0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="readable or writable by everyone"):
        auth.read_tokens_file(str(link))
    target.chmod(0o600)
    assert auth.read_tokens_file(str(link)).scope_of(RW) == "rw"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the tokens file .*missing"):
        auth.read_tokens_file(str(tmp_path / "missing"))
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(ConfigError):
        auth.read_tokens_file(str(folder))


def test_bad_line_message_names_file_and_line(tmp_path):
    path = write_tokens(tmp_path / "tokens", f"ro {RO}\nwrite {RW}\n")
    with pytest.raises(ConfigError) as caught:
        auth.read_tokens_file(str(path))
    assert str(caught.value) == f"bad tokens file {path}: line 2: expected {LINE}"


# --- comparison ----------------------------------------------------------------------


def test_scope_of():
    tokens = auth.Tokens([("ro", RO), ("rw", RW)])
    assert tokens.scope_of(RO) == "ro"
    assert tokens.scope_of(RW) == "rw"
    for other in ["", RO[:-1], RO + "x", RO.upper(), RW[1:], "x" * 10_000]:
        assert tokens.scope_of(other) is None, other


def test_find_gives_the_scope_and_the_name():
    tokens = auth.Tokens([("ro", RO, "cartd"), ("rw", RW), ("metrics", MT, "prom")])
    assert tokens.find(RO) == ("ro", "cartd")
    assert tokens.find(RW) == ("rw", auth.default_name(RW))
    assert tokens.find(MT) == ("metrics", "prom")
    assert tokens.find(RO + "x") == (None, None)


def test_tokens_are_kept_only_as_digests():
    tokens = auth.Tokens([("ro", RO), ("rw", RW)])
    kept = repr(vars(tokens))
    assert RO not in kept and RW not in kept
    assert all(len(digest) == 32 for digest, _, _ in tokens._digests)


def test_every_digest_is_compared_even_after_a_match(monkeypatch):
    tokens = auth.Tokens([("rw", RW)] + [("ro", f"{RO}{n:04d}") for n in range(9)])
    compared = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert tokens.scope_of(RW) == "rw"  # the first one matches
    assert len(compared) == 10
    compared.clear()
    assert tokens.scope_of("no-such-token-at-all") is None
    assert len(compared) == 10


# --- the request check ----------------------------------------------------------------

TOKENS = auth.Tokens([("ro", RO, "reader"), ("rw", RW), ("metrics", MT, "prom")])


def refusal(method, path="/x", **environ):
    try:
        auth.check(TOKENS, method, path, environ)
    except auth.ArchiveError as exc:
        return exc
    return None


def test_check_gives_the_name_of_the_token():
    assert auth.check(TOKENS, "GET", "/x", {"HTTP_AUTHORIZATION": f"Bearer {RO}"}) == "reader"
    assert auth.check(TOKENS, "PUT", "/x", {"HTTP_AUTHORIZATION": f"Bearer {RW}"}) == auth.default_name(RW)
    assert auth.check(TOKENS, "GET", "/metrics", {"HTTP_AUTHORIZATION": f"Bearer {MT}"}) == "prom"
    assert auth.check(TOKENS, "GET", "/", {"HTTP_AUTHORIZATION": f"Bearer {RW}"}) is None  # open: not looked at


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("token", [RO, RW, MT])
def test_every_scope_reads_the_metrics(method, token):
    assert refusal(method, "/metrics", HTTP_AUTHORIZATION=f"Bearer {token}") is None


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/x"), ("HEAD", "/x"), ("PUT", "/x"), ("POST", "/x"), ("OPTIONS", "/metrics"), ("POST", "/metrics"),
     ("GET", "/metrics/"), ("GET", "/readyz"), ("GET", "/api/v1/stage/x"), ("DELETE", "/x")],
)  # fmt: skip
def test_a_metrics_token_reads_only_the_metrics(method, path):
    exc = refusal(method, path, HTTP_AUTHORIZATION=f"Bearer {MT}")
    assert isinstance(exc, auth.InsufficientScope) and exc.status == 403
    assert exc.headers["WWW-Authenticate"] == 'Bearer realm="pyai", error="insufficient_scope"'
    assert MT not in exc.message and MT not in exc.detail


@pytest.mark.parametrize(
    "header, challenge",
    [
        (None, 'Bearer realm="pyai"'),
        ("Basic dXNlcjpwYXNz", 'Bearer realm="pyai"'),  # another scheme: no error code
        ("Bearer", 'Bearer realm="pyai", error="invalid_token"'),
        (f"Bearer {RW} extra", 'Bearer realm="pyai", error="invalid_token"'),
        (f"Bearer{RW}", 'Bearer realm="pyai", error="invalid_token"'),
        ("Bearer not-a-configured-token", 'Bearer realm="pyai", error="invalid_token"'),
    ],
)
def test_unauthorized(header, challenge):
    environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
    exc = refusal("GET", **environ)
    assert isinstance(exc, auth.Unauthorized) and exc.status == 401
    assert exc.headers == {"WWW-Authenticate": challenge}
    assert RW not in exc.message and RW not in exc.detail


@pytest.mark.parametrize("header", [f"Bearer {RW}", f"bearer {RW}", f"BEARER   {RW}"])
def test_scheme_is_case_insensitive(header):
    assert refusal("PUT", HTTP_AUTHORIZATION=header) is None


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "OPTIONS"])
def test_read_only_token_reads_and_stages(method):
    assert refusal(method, HTTP_AUTHORIZATION=f"Bearer {RO}") is None


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_read_only_token_cannot_write(method):
    exc = refusal(method, HTTP_AUTHORIZATION=f"Bearer {RO}")
    assert isinstance(exc, auth.InsufficientScope) and exc.status == 403
    assert exc.headers["WWW-Authenticate"] == 'Bearer realm="pyai", error="insufficient_scope"'


def test_only_the_health_check_is_open():
    assert refusal("GET", "/") is None
    assert refusal("HEAD", "/") is None
    for method, path in [("POST", "/"), ("PUT", "/"), ("DELETE", "/"), ("GET", "//"), ("GET", "/a/b")]:
        assert isinstance(refusal(method, path), auth.Unauthorized), (method, path)


class GunicornLikeBody:
    failed = False


@pytest.mark.parametrize(
    "body_headers, closes",
    [
        ({"CONTENT_LENGTH": "5"}, True),
        ({"HTTP_TRANSFER_ENCODING": "chunked"}, True),
        ({"CONTENT_LENGTH": "0"}, False),
        ({}, False),
    ],
)
def test_a_refused_body_closes_the_connection(body_headers, closes):
    stream = GunicornLikeBody()
    environ = {"wsgi.input": stream, **body_headers}
    with pytest.raises(auth.Unauthorized):
        auth.check(TOKENS, "PUT", "/x", environ)
    assert bool(environ.get(CLOSE_CONNECTION)) is closes
    assert stream.failed is closes


# --- tokens issued here ---------------------------------------------------------------------

SECRET = b"k" * 32
ISSUED = IssuedTokens(SECRET)


def issued_token(path="/data", activities=("storage.read",), expires_in=60, secret=SECRET, subject="reader"):
    return mint(secret, IssuedGrant(subject, path, frozenset(activities), int(time.time()) + expires_in))


def issued_refusal(method, path, token, rule=scopes.DATA, issued=ISSUED):
    environ = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    try:
        name = auth.check(TOKENS, method, path, environ, rule=rule, issued=issued)
    except auth.ArchiveError as exc:
        assert token not in exc.message and token not in exc.detail
        return exc
    assert name == environ[auth.RIGHTS].name
    return None


def test_an_issued_token_is_read_as_a_grant_on_its_path():
    token = issued_token()
    environ = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert auth.check(TOKENS, "GET", "/data/f", environ, rule=scopes.DATA, issued=ISSUED) == "issued:reader"
    assert environ[scopes.GRANT] is environ[auth.RIGHTS] and environ[scopes.GRANT].path == "/data"
    assert issued_refusal("HEAD", "/data", token) is None
    for method, path in [("PUT", "/data/g"), ("GET", "/datax"), ("PROPFIND", "/"), ("DELETE", "/data/f")]:
        exc = issued_refusal(method, path, token)
        assert isinstance(exc, auth.InsufficientScope) and exc.status == 403, (method, path)
    assert isinstance(issued_refusal("GET", "/metrics", token, rule=None), auth.InsufficientScope)


@pytest.mark.parametrize(
    "token, reason",
    [
        (issued_token(expires_in=-1), "expired"),
        (issued_token(secret=b"x" * 32), "bad signature"),
        (issued_token()[:-2] + "AA", "bad signature"),
        ("pyai1.not-a-token", "malformed"),
    ],
)
def test_a_bad_issued_token_is_401_invalid_token(token, reason):
    exc = issued_refusal("GET", "/data/f", token)
    assert isinstance(exc, auth.Unauthorized) and reason in exc.message
    assert exc.headers == {"WWW-Authenticate": 'Bearer realm="pyai", error="invalid_token"'}


def test_an_issued_token_without_a_secret_is_401():
    exc = issued_refusal("GET", "/data/f", issued_token(), issued=None)
    assert isinstance(exc, auth.Unauthorized) and "issues no tokens" in exc.message


def test_a_static_token_leaves_its_rights():
    environ = {"HTTP_AUTHORIZATION": f"Bearer {RO}"}
    auth.check(TOKENS, "POST", "/x", environ)
    rights = auth.rights_of(environ)
    assert rights == auth.StaticRights("ro", "reader")
    assert rights.allows(("storage.read",), "/x") and rights.allows(scopes.STAT, "/")
    assert not rights.allows(scopes.CREATE, "/x")
    assert not auth.StaticRights("metrics", "prom").allows(scopes.STAT, "/x")
    assert auth.StaticRights("rw", "w").allows(scopes.MODIFY, "/x")


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_a_private_secret_file_is_read(tmp_path, mode):
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(mode)
    assert auth.read_secret_file(str(path)) == SECRET  # the final line end is not the secret's


@pytest.mark.parametrize(
    "mode, content, words",
    [
        (0o644, SECRET, ["the token secret file", "readable or writable by everyone", "0644", "chmod o-rwx"]),
        (0o604, SECRET, ["readable or writable by everyone", "0604"]),
        (0o660, SECRET, ["the token secret file", "writable by its group", "0660", "chmod g-w,o-rwx"]),
        (0o600, SECRET[:31], ["fewer than 32 bytes", "head -c 32 /dev/urandom"]),
        (0o600, SECRET[:31] + b"\n", ["fewer than 32 bytes"]),
        (0o600, SECRET[:30] + b"\r\n", ["fewer than 32 bytes"]),
        (0o600, b"", ["fewer than 32 bytes"]),
    ],
)
def test_a_secret_file_that_cannot_serve_is_refused_in_one_line(tmp_path, mode, content, words):
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        auth.read_secret_file(str(path))
    message = str(caught.value)
    assert str(path) in message and all(word in message for word in words), message
    assert "\n" not in message and "kkkk" not in message


def test_a_missing_secret_file_and_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the token secret file .*missing"):
        auth.read_secret_file(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a regular file|cannot read"):
        auth.read_secret_file(str(tmp_path))


def test_a_secret_needs_authentication(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    env = {"HOME": str(tmp_path), "PAI_AUTH_TOKEN_SECRET_FILE": str(secret)}
    with pytest.raises(ConfigError, match="token_secret_file needs tokens_file, jwt_issuers or dn_header"):
        load(environ=env, prepare=False)
    tokens = write_tokens(tmp_path / "tokens", f"rw {RW}\n")
    config = load(environ={**env, "PAI_AUTH_TOKENS_FILE": str(tokens)}, prepare=False)
    assert config.auth_token_secret_file == str(secret)
    assert auth.token_issuer(config) is not None
    assert auth.token_issuer(load(environ={"HOME": str(tmp_path)}, prepare=False)) is None


# --- configuration and the exposure warning ---------------------------------------------


def test_off_by_default(tmp_path):
    config = load(environ={"HOME": str(tmp_path)}, prepare=False)
    assert config.auth_tokens_file == ""


def test_tokens_file_from_ini_env_and_flag(tmp_path, monkeypatch):
    ini = tmp_path / "a.ini"
    ini.write_text("[auth]\ntokens_file = ~/from-ini\n")
    monkeypatch.setenv("HOME", str(tmp_path))  # expanduser reads the process environment
    env = {"HOME": str(tmp_path)}
    assert load(config_file=str(ini), environ=env, prepare=False).auth_tokens_file == str(tmp_path / "from-ini")
    env["PAI_AUTH_TOKENS_FILE"] = "/etc/pyai/tokens"
    assert load(config_file=str(ini), environ=env, prepare=False).auth_tokens_file == "/etc/pyai/tokens"
    monkeypatch.chdir(tmp_path)
    flag = load({"auth_tokens_file": "rel/tokens"}, config_file=str(ini), environ=env, prepare=False)
    assert flag.auth_tokens_file == os.path.join(str(tmp_path), "rel", "tokens")


@pytest.mark.parametrize(
    "addresses, exposed",
    [
        ([("127.0.0.1", 8080)], []),
        ([("127.0.0.2", 8080)], []),
        ([("::1", 8080)], []),
        ([("localhost", 8080)], []),
        (["/run/pyai.sock"], []),
        ([("0.0.0.0", 8080)], ["0.0.0.0:8080"]),
        ([("::", 9000)], ["[::]:9000"]),
        ([("127.0.0.1", 1), ("192.0.2.7", 2)], ["192.0.2.7:2"]),
    ],
)
def test_non_loopback(addresses, exposed):
    assert auth.non_loopback(addresses) == exposed


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.parametrize(
    "tokens_file, addresses, warned",
    [("", [("0.0.0.0", 80)], True), ("/etc/t", [("0.0.0.0", 80)], False), ("", [("127.0.0.1", 80)], False)],
)
def test_warn_if_open(tmp_path, tokens_file, addresses, warned):
    config = load({"auth_tokens_file": tokens_file}, environ={"HOME": str(tmp_path)}, prepare=False)
    log = logging.getLogger(f"test-auth-warning-{tmp_path.name}")
    recorder = Recorder()
    log.addHandler(recorder)
    auth.warn_if_open(config, addresses, log)
    assert len(recorder.records) == (1 if warned else 0)
    if warned:
        assert recorder.records[0].levelno == logging.WARNING
        assert "0.0.0.0:80 without authentication" in recorder.records[0].getMessage()
