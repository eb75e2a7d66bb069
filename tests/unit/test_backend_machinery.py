"""What the backends share: the tree walk, mkdir -p, PATCH's source checks, the bounded stage-once pool."""

import errno
import os
import stat
import threading

import pytest

from pyai.backends import moves, tree
from pyai.backends.jobs import KeyedPool
from pyai.errors import Forbidden, describe, os_error


def _fake_listing(layout):
    """A tree.Lister over ``{directory: {name: "dir" | "file" | "link"}}``."""

    def list_dir(directory):
        if directory not in layout:
            raise FileNotFoundError(errno.ENOENT, "gone", directory)
        for name, kind in layout[directory].items():
            path = directory.rstrip("/") + "/" + name
            yield tree.Entry(path, name, kind == "dir", kind == "file", 1.0)

    return list_dir


LAYOUT = {
    "/p": {"b": "dir", "a": "dir", "x": "file", ".pyai-tmp-1": "file", ".hidden": "dir", "y": "file"},
    "/p/a": {"f": "file", ".pyai-tmp-2": "file", "l": "link"},
    "/p/b": {"g": "file", "gone": "dir"},
    "/p/.hidden": {"h": "file", ".pyai-tmp-3": "file"},
}


def test_stored_files_are_in_name_order_without_dot_names():
    assert list(tree.stored_files("/p", _fake_listing(LAYOUT))) == ["/p/y", "/p/x", "/p/a/f", "/p/b/g"]


def test_temp_files_are_found_everywhere_and_unlisted_directories_skipped():
    found = sorted(entry.path for entry in tree.temp_files("/p", _fake_listing(LAYOUT)))
    assert found == ["/p/.hidden/.pyai-tmp-3", "/p/.pyai-tmp-1", "/p/a/.pyai-tmp-2"]


def test_list_local_skips_nothing_but_reports_kinds(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "d")
    kinds = {entry.name: (entry.is_dir, entry.is_file) for entry in tree.list_local(str(tmp_path))}
    assert kinds == {"d": (True, False), "f": (False, True), "l": (False, False)}


def test_make_dirs_syncs_every_parent_and_never_makes_the_root(tmp_path):
    root = str(tmp_path / "root")
    synced = []
    with pytest.raises(FileNotFoundError):
        tree.make_dirs(root + "/a/b", os.mkdir, root=root, root_exists=os.path.isdir, sync_dir=synced.append)
    assert not os.path.exists(root) and synced == []
    os.mkdir(root)
    tree.make_dirs(root + "/a/b", os.mkdir, root=root, root_exists=os.path.isdir, sync_dir=synced.append)
    assert os.path.isdir(root + "/a/b") and synced == [root, root + "/a"]
    tree.make_dirs(root + "/a/b", os.mkdir)  # made already: nothing to do, no sync asked for
    assert synced == [root, root + "/a"]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("/srv/in/x/f", ("/srv/in/x", ["f"])),  # the innermost root
        ("/srv/in/./y//f", ("/srv/in", ["y", "f"])),
        ("/srv/archive/12", ("/srv/archive", ["12"])),
    ],
)
def test_allowed_sources(source, expected):
    assert moves.allowed_source(source, ("/srv/archive", "/srv/in", "/srv/in/x")) == expected


@pytest.mark.parametrize(
    "source", ["relative/f", "/srv/in/../etc/passwd", "/srv/in", "/srv/inx/f", "/srv/in/.pyai-tmp-1"]
)
def test_refused_sources(source):
    with pytest.raises(Forbidden) as info:
        moves.allowed_source(source, ("/srv/archive", "/srv/in"))
    assert info.value.detail == "move: source outside the allowed roots"


def test_check_source():
    moves.check_source(stat.S_IFREG | 0o644)
    moves.check_source(stat.S_IFREG | 0o644, 1)
    with pytest.raises(Forbidden, match="not a regular file"):
        moves.check_source(stat.S_IFDIR | 0o755)
    with pytest.raises(Forbidden, match="other hard links"):
        moves.check_source(stat.S_IFREG | 0o644, 2)


def test_a_key_runs_once_and_the_pool_is_bounded():
    release = threading.Event()
    ran = []
    pool = KeyedPool(1, "test", limit=3)

    def job(key):
        def run():
            release.wait(5)
            ran.append(key)

        return run

    assert pool.start("a", job("a"))
    assert not pool.start("a", job("a"))  # queued or running: once
    assert pool.start("b", job("b")) and pool.start("c", job("c"))
    assert not pool.start("d", job("d"))  # full: refused, not remembered
    assert not pool.busy("d")
    release.set()
    for _ in range(500):
        if not any(pool.busy(key) for key in "abc"):
            break
        threading.Event().wait(0.01)
    assert sorted(ran) == ["a", "b", "c"]
    assert pool.start("d", job("d"))  # room again


def test_os_error_keeps_the_op_out_of_strerror():
    exc = os_error(-errno.EIO, "fsync", "/d")
    assert exc.strerror == os.strerror(errno.EIO) and exc.op == "fsync" and exc.filename == "/d"
    assert describe(exc) == f"fsync: {os.strerror(errno.EIO)}"
    assert describe(OSError(errno.ENOENT, "gone")) == "gone"
