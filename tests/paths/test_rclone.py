"""rclone's webdav remote syncing a tree into ``namespace = paths``, as a new user tries it:
copy, lsf -R, check (by content), and a second sync that finds nothing to do."""

import os
import shutil
import subprocess

import pytest

if shutil.which("rclone") is None:
    pytest.skip("rclone is not installed (make system-deps installs it)", allow_module_level=True)


@pytest.fixture
def rclone(paths_server, top, tmp_path):
    """Runs rclone with a private config and the remote ``pyai:`` at the test's collection."""
    home = tmp_path / "rclone-home"
    home.mkdir()
    (home / "rclone.conf").write_text("")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "RCLONE_CONFIG": str(home / "rclone.conf"),
        "RCLONE_CONFIG_PYAI_TYPE": "webdav",
        "RCLONE_CONFIG_PYAI_URL": paths_server.url + top,
        "RCLONE_CONFIG_PYAI_VENDOR": "other",
    }

    def run(*args, check=True):
        proc = subprocess.run(["rclone", *args], env=env, capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc

    return run


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"one\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    (src / "sub" / "deeper" / "c.txt").write_bytes(b"three\n")
    return src


@pytest.mark.quick
def test_rclone_copy_list_check_and_sync(paths_server, top, rclone, tree):
    rclone("copy", str(tree), "pyai:")
    stored = paths_server.prefix / top[1:]
    assert (stored / "sub" / "b.bin").read_bytes() == (tree / "sub" / "b.bin").read_bytes()
    listed = rclone("lsf", "-R", "pyai:").stdout.split()
    assert sorted(listed) == ["a.txt", "sub/", "sub/b.bin", "sub/deeper/", "sub/deeper/c.txt"]
    checked = rclone("check", "--download", str(tree), "pyai:")
    assert "0 differences found" in checked.stderr
    again = rclone("sync", "-v", str(tree), "pyai:")
    assert "Copied" not in again.stderr and "Deleted" not in again.stderr
    assert "Checks:                 3 / 3" in again.stderr


def test_rclone_sync_removes_what_the_source_no_longer_has(paths_server, top, rclone, tree):
    rclone("copy", str(tree), "pyai:")
    (tree / "a.txt").unlink()
    rclone("sync", str(tree), "pyai:")
    assert sorted(rclone("lsf", "-R", "pyai:").stdout.split()) == [
        "sub/",
        "sub/b.bin",
        "sub/deeper/",
        "sub/deeper/c.txt",
    ]
    assert not (paths_server.prefix / top[1:] / "a.txt").exists()
