"""Configuration precedence and validation (file < environment < flags)."""

import os

import pytest

from pyai.config import load
from pyai.errors import ConfigError


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
