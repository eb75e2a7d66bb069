"""pyai.backends.beneath: directories opened below a descriptor, never through a symlink."""

import errno
import os

import pytest

from pyai.backends import beneath


@pytest.fixture(params=["openat2", "walk"])
def mode(request, monkeypatch):
    """Each test with openat2 and with the component walk of kernels without it."""
    monkeypatch.setattr(beneath, "_no_openat2", request.param == "walk")
    return request.param


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "a" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "a" / "inner-link").symlink_to("b")
    (tmp_path / "a" / "file").write_bytes(b"x")
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def test_opens_a_directory_below(mode, tree):
    base, fd = tree
    sub = beneath.open_dir(fd, ["a", "b"])
    try:
        assert os.path.samestat(os.fstat(sub), os.stat(base / "a" / "b"))
        os.fsync(sub)  # a real descriptor, not O_PATH: a directory fsync works on it
    finally:
        os.close(sub)


def test_empty_components_open_the_directory_itself(mode, tree):
    base, fd = tree
    same = beneath.open_dir(fd, [])
    try:
        assert os.path.samestat(os.fstat(same), os.stat(base))
    finally:
        os.close(same)


@pytest.mark.parametrize("parts", [["a", "link"], ["a", "inner-link"], ["a", "link", "x"]])
def test_symlink_components_are_eloop(mode, tree, parts):
    _base, fd = tree
    with pytest.raises(OSError) as info:
        beneath.open_dir(fd, parts)
    assert info.value.errno == errno.ELOOP


def test_missing_and_non_directories(mode, tree):
    _base, fd = tree
    with pytest.raises(FileNotFoundError):
        beneath.open_dir(fd, ["a", "nothing"])
    with pytest.raises(NotADirectoryError):
        beneath.open_dir(fd, ["a", "file"])


@pytest.mark.parametrize("parts", [[".."], ["a", "..", "outside"], ["a/b"], [""]])
def test_only_plain_names(tree, parts):
    _base, fd = tree
    with pytest.raises(ValueError):
        beneath.open_dir(fd, parts)


def test_a_rename_race_is_retried_a_bounded_number_of_times(tree, monkeypatch):
    """EAGAIN (the kernel saw a rename during a RESOLVE_BENEATH walk): tried again, _RETRIES times in all."""
    _base, fd = tree
    calls = []

    def racing(*args):
        calls.append(args)
        raise BlockingIOError(errno.EAGAIN, "rename race")

    monkeypatch.setattr(beneath, "_no_openat2", False)
    monkeypatch.setattr(beneath.native, "openat2", racing)
    with pytest.raises(BlockingIOError):
        beneath.open_dir(fd, ["a"])
    assert len(calls) == beneath._RETRIES


def test_open_below_opens_a_file_through_plain_directories(mode, tree):
    base, _fd = tree
    (base / "a" / "b" / "f").write_bytes(b"below")
    fd = beneath.open_below(str(base), "a/b/f", os.O_RDONLY)
    try:
        assert os.read(fd, 10) == b"below"
    finally:
        os.close(fd)


@pytest.mark.parametrize("relative", ["a/link/x", "a/inner-link/f", "a/link"])
def test_open_below_follows_no_symlink_on_the_way_or_at_the_end(mode, tree, relative):
    base, _fd = tree
    (base / "outside" / "x").write_bytes(b"outside")
    with pytest.raises(OSError) as info:
        beneath.open_below(str(base), relative, os.O_RDONLY)
    assert info.value.errno == errno.ELOOP


@pytest.mark.parametrize("relative", ["a/../a/file", "./a/file", "a//file", ""])
def test_open_below_takes_plain_names_only(tree, relative):
    base, _fd = tree
    with pytest.raises(ValueError):
        beneath.open_below(str(base), relative, os.O_RDONLY)
