"""The emulator's directories and capacity as the vendor's calls behave (hpss-api.md 1.5, 1.6),
through the binding: hpss_Mkdir makes one level (-EEXIST when taken), hpss_Rmdir only an empty
directory, hpss_Readdir lists the names, hpss_Statfs tells the capacity of the prefix's file
system in 32-bit block counts."""

import errno
import os

import pytest

from .test_emulator import put


def test_mkdir_makes_one_level_and_never_replaces(emu):
    hpss, root = emu
    hpss.mkdir(str(root / "d"))
    assert (root / "d").is_dir()
    assert hpss.lib.pyai_mkdir(str(root / "d").encode(), 0o755) == -errno.EEXIST
    with pytest.raises(FileExistsError):
        hpss.mkdir(str(root / "d"))
    put(hpss, root / "f", b"x")
    with pytest.raises(FileExistsError):  # a file has the name: taken as well
        hpss.mkdir(str(root / "f"))


def test_mkdir_is_not_recursive(emu):
    hpss, root = emu
    assert hpss.lib.pyai_mkdir(str(root / "a" / "b").encode(), 0o755) == -errno.ENOENT
    with pytest.raises(FileNotFoundError):
        hpss.mkdir(str(root / "a" / "b"))
    assert not (root / "a").exists()


def test_mkdir_below_a_file_is_enotdir(emu):
    hpss, root = emu
    put(hpss, root / "f", b"x")
    assert hpss.lib.pyai_mkdir(str(root / "f" / "d").encode(), 0o755) == -errno.ENOTDIR
    with pytest.raises(NotADirectoryError):
        hpss.mkdir(str(root / "f" / "d"))


def test_rmdir_removes_only_an_empty_directory(emu):
    hpss, root = emu
    hpss.mkdir(str(root / "d"))
    put(hpss, root / "d" / "f", b"kept")
    assert hpss.lib.pyai_rmdir(str(root / "d").encode()) == hpss.lib.PYAI_HPSS_ENOTEMPTY == -87
    with pytest.raises(OSError) as info:
        hpss.rmdir(str(root / "d"))
    assert info.value.errno == errno.ENOTEMPTY
    assert (root / "d" / "f").read_bytes() == b"kept"
    hpss.unlink(str(root / "d" / "f"))
    hpss.rmdir(str(root / "d"))
    assert not (root / "d").exists()
    with pytest.raises(FileNotFoundError):
        hpss.rmdir(str(root / "d"))


def test_rmdir_of_a_file_is_enotdir(emu):
    hpss, root = emu
    put(hpss, root / "f", b"x")
    with pytest.raises(NotADirectoryError):
        hpss.rmdir(str(root / "f"))
    assert (root / "f").exists()


def test_listdir_names_files_and_directories_but_not_dot_entries(emu):
    hpss, root = emu
    hpss.mkdir(str(root / "d"))
    put(hpss, root / "d" / "f", b"x")
    hpss.mkdir(str(root / "d" / "sub"))
    put(hpss, root / "d" / ".pyai-tmp-x", b"")
    assert sorted(hpss.listdir(str(root / "d"))) == [".pyai-tmp-x", "f", "sub"]
    assert hpss.listdir(str(root / "d" / "sub")) == []
    with pytest.raises(FileNotFoundError):
        hpss.listdir(str(root / "none"))
    with pytest.raises(NotADirectoryError):
        hpss.listdir(str(root / "d" / "f"))


def test_statfs_tells_the_prefix_file_system_in_32_bit_counts(emu):
    hpss, root = emu
    fs = hpss.statfs(1)
    st = os.statvfs(root)
    assert all(0 <= count < 2**32 for count in (fs.blocks, fs.bfree, fs.bavail))
    assert fs.bsize >= st.f_frsize and fs.bsize % st.f_frsize == 0
    # the same bytes, up to the rounding of the wider blocks
    assert abs(fs.blocks * fs.bsize - st.f_blocks * st.f_frsize) < fs.bsize
    assert fs.bavail <= fs.bfree <= fs.blocks
    assert hpss.statfs(0) == hpss.statfs(7)  # one storage, whatever the class of service


def test_statfs_needs_a_login(emu):
    hpss, root = emu
    hpss.lib.hpss_PurgeLoginCred()
    with pytest.raises(PermissionError):
        hpss.statfs(1)
