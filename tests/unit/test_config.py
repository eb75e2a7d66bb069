"""Configuration precedence and validation (file < environment < flags)."""

import dataclasses
import os
import re
from pathlib import Path
from typing import get_type_hints

import pytest

from pyai.config import OTHER_ENVIRONMENT, SETTINGS, Config, _value_type, load
from pyai.errors import ConfigError
from pyai.server.serve import check_config


def write_ini(tmp_path, text):
    path = tmp_path / "config.ini"
    path.write_text(text)
    return str(path)


def test_defaults_without_any_source(tmp_path):
    config = load(environ={"HOME": str(tmp_path)}, prepare=False)
    assert (config.backend, config.prefix, config.allow_overwrite, config.use_id2filename) == (
        "posix",
        "/tmp",
        False,
        False,
    )
    assert config.max_body_size == 0 and config.patch_roots == ()


def test_file_then_environment_then_flags(tmp_path):
    ini = write_ini(
        tmp_path,
        "[archive]\nprefix = /from/file\nallow_overwrite = yes\nmax_body_size = 10M\n[posix]\nuse_id2filename = true\n",
    )
    config = load(environ={"ARCHIVEINTERFACE_CONFIG": ini}, prepare=False)
    assert (config.prefix, config.allow_overwrite, config.max_body_size, config.use_id2filename) == (
        "/from/file",
        True,
        10 << 20,
        True,
    )
    environ = {"ARCHIVEINTERFACE_CONFIG": ini, "PAI_PREFIX": "/from/env", "PAI_MAX_BODY_SIZE": "2G"}
    config = load(environ=environ, prepare=False)
    assert (config.prefix, config.max_body_size) == ("/from/env", 2 << 30)
    config = load({"prefix": "/from/flag"}, environ=environ, prepare=False)
    assert config.prefix == "/from/flag"


def test_the_home_config_file_is_read(tmp_path):
    (tmp_path / ".pacifica-archiveinterface").mkdir()
    (tmp_path / ".pacifica-archiveinterface" / "config.ini").write_text(
        "[archive]\nbackend = POSIX\nprefix = /home/file\n"
    )
    config = load(environ={"HOME": str(tmp_path)}, prepare=False)
    assert (config.backend, config.prefix) == ("posix", "/home/file")


def test_patch_roots_are_resolved(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    config = load(environ={"PAI_PATCH_ROOTS": f"{tmp_path / 'link'}:{tmp_path}/other"}, prepare=False)
    assert config.patch_roots == (str(real), str(tmp_path / "other"))


@pytest.mark.parametrize(
    "environ,words",
    [
        ({"PAI_BACKEND_TYPE": "nosuch"}, ["nosuch", "PAI_BACKEND_TYPE", "posix"]),
        ({"PAI_MAX_BODY_SIZE": "lots"}, ["lots", "PAI_MAX_BODY_SIZE"]),
        ({"PAI_ALLOW_OVERWRITE": "maybe"}, ["maybe", "true or false"]),
        ({"PAI_RECEIVE_TIMEOUT": "-1"}, ["-1", "PAI_RECEIVE_TIMEOUT"]),
        ({"ARCHIVEINTERFACE_CONFIG": "/nonexistent/x.ini"}, ["/nonexistent/x.ini", "cannot read"]),
    ],
)
def test_bad_values_name_their_source(environ, words):
    with pytest.raises(ConfigError) as caught:
        load(environ=environ, prepare=False)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_bad_ini_syntax(tmp_path):
    ini = write_ini(tmp_path, "this is not ini\n")
    with pytest.raises(ConfigError, match="not valid INI"):
        load(environ={"ARCHIVEINTERFACE_CONFIG": ini}, prepare=False)


def test_prefix_is_created(tmp_path):
    prefix = tmp_path / "a" / "b"
    config = load(environ={"PAI_PREFIX": str(prefix)})
    assert prefix.is_dir() and config.prefix == str(prefix)


def test_prefix_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the archive prefix"):
        load(environ={"PAI_PREFIX": str(tmp_path / "file" / "sub")})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_prefix_is_refused(tmp_path):
    prefix = tmp_path / "ro"
    prefix.mkdir(mode=0o555)
    with pytest.raises(ConfigError, match="not writable"):
        load(environ={"PAI_PREFIX": str(prefix)})


# --- strictness: names that are no setting (issue 23) -------------------------------


@pytest.mark.parametrize(
    "text,words",
    [
        ("[archive]\nprefx = /srv/archive\n", ["config.ini: [archive] prefx is not a setting (did you mean prefix?)"]),
        ("[archive]\nmax_body = 2T\n", ["[archive] max_body", "did you mean max_body_size?"]),
        ("[posix]\nuse_id2filenam = true\n", ["[posix] use_id2filenam", "did you mean use_id2filename?"]),
        ("[archiv]\nprefix = /srv/archive\n", ["[archiv] is not a section (did you mean [archive]?)"]),
        ("[posix]\nprefix = /srv/archive\n", ["[posix] prefix is not a setting (it is a setting of [archive])"]),
        ("[DEFAULT]\nprefx = /x\n", ["[DEFAULT] prefx is not a setting (did you mean prefix?)"]),
    ],
)
def test_an_unknown_name_in_the_file_is_refused(tmp_path, text, words):
    ini = write_ini(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(environ={"ARCHIVEINTERFACE_CONFIG": ini}, prepare=False)
    for word in words:
        assert word in str(caught.value)


def test_an_unknown_pai_variable_is_refused():
    with pytest.raises(ConfigError, match=r"PAI_PREFX is not a setting \(did you mean PAI_PREFIX\?\)"):
        load(environ={"PAI_PREFX": "/srv/archive"}, prepare=False)


def test_the_originals_file_is_accepted(tmp_path):
    """Every section and option the original's get_config() knows (pacifica/archiveinterface/config.py)."""
    ini = write_ini(
        tmp_path,
        "[posix]\nuse_id2filename = false\n"
        "[hpss]\nuser = hpss.unix\nauth = /var/hpss/etc/hpss.unix.keytab\nsitename = example.com\naccept_latency = 5\n"
        "[hsm_sideband]\nsam_qfs_prefix = /data/pacifica/test/\nschema = samqfs1db\nhost = host\nuser = user\n"
        "password = pass\nport = 3306\n",
    )
    config = load(environ={"ARCHIVEINTERFACE_CONFIG": ini}, prepare=False)
    assert (config.sideband_schema, config.hpss_user) == ("samqfs1db", "hpss.unix")


def test_the_originals_hpss_defaults_are_kept(tmp_path):
    config = load(environ={"HOME": str(tmp_path)}, prepare=False)
    assert (config.hpss_user, config.hpss_auth) == ("hpss.unix", "/var/hpss/etc/hpss.unix.keytab")


def _pai_names_read_in(root):
    names = set()
    for path in [
        *root.joinpath("pyai").rglob("*.py"),
        root / "gunicorn.conf.py",
        root / "Makefile",
        *root.joinpath("deploy").rglob("*"),
    ]:
        if path.is_file():
            names.update(re.findall(r"\bPAI_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    return names


def test_every_pai_variable_the_code_reads_is_known():
    """A PAI_* variable read anywhere but through SETTINGS must be in OTHER_ENVIRONMENT, or it would be refused."""
    known = {setting.env for setting in SETTINGS} | set(OTHER_ENVIRONMENT)
    assert _pai_names_read_in(Path(__file__).resolve().parents[2]) - known == set()


def test_which_prefix_was_defaulted(tmp_path):
    assert "prefix" in load(environ={"HOME": str(tmp_path)}, prepare=False).defaulted
    assert "prefix" not in load(environ={"HOME": str(tmp_path), "PAI_PREFIX": "/tmp"}, prepare=False).defaulted


def test_check_lists_every_problem_and_creates_nothing(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("rw short\n")
    tokens.chmod(0o600)
    ini = write_ini(tmp_path, f"[archiv]\nx = 1\n[archive]\nprefix = {tmp_path / 'p'}\nmax_body_size = lots\n")
    environ = {"ARCHIVEINTERFACE_CONFIG": ini, "PAI_AUTH_TOKENS_FILE": str(tokens), "PAI_THREADZ": "4"}
    problems = check_config(environ=environ)  # config.check with the tokens file's and transfer log's checks
    assert len(problems) == 4, problems
    assert [p for p in problems if "[archiv]" in p] and [p for p in problems if "PAI_THREADZ" in p]
    assert [p for p in problems if "lots" in p] and [p for p in problems if str(tokens) in p]
    assert not (tmp_path / "p").exists()
    environ = {"ARCHIVEINTERFACE_CONFIG": write_ini(tmp_path, f"[archive]\nprefix = {tmp_path / 'p'}\n")}
    assert check_config(environ=environ) == []
    assert not (tmp_path / "p").exists()


def test_check_finds_wlcg_settings_that_cannot_work(tmp_path):
    """A CA file that is not there is one line at check-config and at start, not a worker that
    fails to boot."""
    environ = {
        "PAI_PREFIX": str(tmp_path / "p"),
        "PAI_AUTH_JWT_ISSUERS": "https://iam.example /",
        "PAI_AUTH_JWT_AUDIENCES": "pyai.example",
        "PAI_AUTH_JWT_CA_FILE": str(tmp_path / "missing.pem"),
    }
    problems = check_config(environ=environ)
    assert len(problems) == 1 and "bad WLCG token settings: cannot load the CA file" in problems[0], problems
    assert check_config(environ={**environ, "PAI_AUTH_JWT_CA_FILE": ""}) == []


def test_config_has_one_typed_field_per_setting_in_order():
    """Config is written out for mypy; it must follow SETTINGS: the same names in the same order,
    each of the type its parser returns, then the two fields load() fills itself."""
    hints = get_type_hints(Config)
    names = [field.name for field in dataclasses.fields(Config)]
    assert names == [setting.name for setting in SETTINGS] + ["config_file", "defaulted"]
    for setting in SETTINGS:
        assert hints[setting.name] == _value_type(setting.parse), setting.name


def test_paths_on_hpss_take_a_class_of_service_for_the_quota(tmp_path):
    environ = {"HOME": str(tmp_path), "PAI_BACKEND_TYPE": "hpss", "PAI_NAMESPACE": "paths"}
    config = load(environ=environ, prepare=False)
    assert (config.backend, config.namespace, config.hpss_quota_cos) == ("hpss", "paths", 0)
    assert load(environ={**environ, "PAI_HPSS_QUOTA_COS": "7"}, prepare=False).hpss_quota_cos == 7
    with pytest.raises(ConfigError, match="class of service"):
        load(environ={**environ, "PAI_HPSS_QUOTA_COS": "-1"}, prepare=False)
    with pytest.raises(ConfigError, match="cannot be combined with use_id2filename"):
        load(environ={**environ, "PAI_USE_ID2FILENAME": "true"}, prepare=False)


def test_check_config_names_every_kind_of_authentication(tmp_path, monkeypatch, capsys):
    from pyai.admin import cli

    monkeypatch.setenv("PAI_AUTH_JWT_ISSUERS", "https://iam.example /vo, https://other.example /")
    monkeypatch.setenv("PAI_AUTH_JWT_AUDIENCES", "pyai.example")
    assert cli.serve_main(["check-config", "--prefix", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(", WLCG tokens of 2 issuer(s)")


# --- client certificates' DNs ([auth] dn_header, dn_proxies, gridmap_file) ------------------------


GRIDMAP_LINE = "'\"<DN>\" <scope> [name]' with the scope ro or rw"


def write_gridmap(tmp_path, text='"/C=CH/O=Test/CN=alice" rw alice\n'):
    path = tmp_path / "grid-mapfile"
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


def test_client_certificates_take_a_header_front_ends_and_a_gridmap(tmp_path):
    environ = {
        "HOME": str(tmp_path),
        "PAI_AUTH_DN_HEADER": " X-SSL-Client-DN ",
        "PAI_AUTH_DN_PROXIES": "127.0.0.1, 10.0.0.0/24 ::1",
        "PAI_AUTH_GRIDMAP_FILE": write_gridmap(tmp_path),
    }
    config = load(environ=environ, prepare=False)
    assert config.auth_dn_header == "X-SSL-Client-DN"
    assert config.auth_dn_proxies == ("127.0.0.1/32", "10.0.0.0/24", "::1/128")
    assert config.auth_gridmap_file == environ["PAI_AUTH_GRIDMAP_FILE"]
    off = load(environ={"HOME": str(tmp_path)}, prepare=False)
    assert (off.auth_dn_header, off.auth_dn_proxies, off.auth_gridmap_file) == ("", (), "")


@pytest.mark.parametrize(
    "missing, words",
    [
        ("PAI_AUTH_DN_PROXIES", "dn_header needs dn_proxies"),
        ("PAI_AUTH_GRIDMAP_FILE", "dn_header needs gridmap_file"),
    ],
)
def test_a_dn_header_needs_its_front_ends_and_its_gridmap(tmp_path, missing, words):
    environ = {
        "HOME": str(tmp_path),
        "PAI_AUTH_DN_HEADER": "X-SSL-Client-DN",
        "PAI_AUTH_DN_PROXIES": "127.0.0.1",
        "PAI_AUTH_GRIDMAP_FILE": write_gridmap(tmp_path),
    }
    del environ[missing]
    with pytest.raises(ConfigError, match=words):
        load(environ=environ, prepare=False)
    problems = check_config(environ={**environ, "PAI_PREFIX": str(tmp_path / "p")})
    assert len(problems) == 1 and words in problems[0], problems


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("PAI_AUTH_DN_HEADER", "X_SSL_Client_DN", ["PAI_AUTH_DN_HEADER", "X-SSL-Client-DN"]),
        ("PAI_AUTH_DN_HEADER", "X-SSL-Client-DN:", ["a header name"]),
        ("PAI_AUTH_DN_PROXIES", "127.0.0.1, nginx.example", ["PAI_AUTH_DN_PROXIES", "'nginx.example' is no IP"]),
        ("PAI_AUTH_DN_PROXIES", "10.0.0.1/24", ["'10.0.0.1/24' is no IP address or network", "host bits"]),
    ],
)
def test_bad_dn_settings_name_themselves(tmp_path, name, value, words):
    environ = {
        "HOME": str(tmp_path),
        "PAI_AUTH_DN_HEADER": "X-SSL-Client-DN",
        "PAI_AUTH_DN_PROXIES": "127.0.0.1",
        "PAI_AUTH_GRIDMAP_FILE": write_gridmap(tmp_path),
        name: value,
    }
    with pytest.raises(ConfigError) as caught:
        load(environ=environ, prepare=False)
    assert all(word in str(caught.value) for word in words), str(caught.value)
    problems = check_config(environ={**environ, "PAI_PREFIX": str(tmp_path / "p")})
    assert len(problems) == 1, problems  # the bad value alone: its companions are not blamed for it


def test_check_reads_the_gridmap_file(tmp_path):
    path = write_gridmap(tmp_path, '"/C=CH/O=Test/CN=alice" rw\n"/C=CH/O=Test/CN=bob" admin\n')
    environ = {
        "PAI_PREFIX": str(tmp_path / "p"),
        "PAI_AUTH_DN_HEADER": "X-SSL-Client-DN",
        "PAI_AUTH_DN_PROXIES": "127.0.0.1",
        "PAI_AUTH_GRIDMAP_FILE": path,
    }
    assert check_config(environ=environ) == [f"bad grid-mapfile {path}: line 2: expected {GRIDMAP_LINE}"]
    write_gridmap(tmp_path)
    assert check_config(environ=environ) == []


def test_a_token_secret_may_serve_client_certificates(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"k" * 32)
    secret.chmod(0o600)
    environ = {
        "HOME": str(tmp_path),
        "PAI_AUTH_TOKEN_SECRET_FILE": str(secret),
        "PAI_AUTH_DN_HEADER": "X-SSL-Client-DN",
        "PAI_AUTH_DN_PROXIES": "127.0.0.1",
        "PAI_AUTH_GRIDMAP_FILE": write_gridmap(tmp_path),
    }
    assert load(environ=environ, prepare=False).auth_token_secret_file == str(secret)


def test_check_config_names_client_certificates(tmp_path, monkeypatch, capsys):
    from pyai.admin import cli

    path = write_gridmap(tmp_path)
    monkeypatch.setenv("PAI_AUTH_DN_HEADER", "X-SSL-Client-DN")
    monkeypatch.setenv("PAI_AUTH_DN_PROXIES", "127.0.0.1")
    monkeypatch.setenv("PAI_AUTH_GRIDMAP_FILE", path)
    assert cli.serve_main(["check-config", "--prefix", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f", client certificates' DNs from {path}")
