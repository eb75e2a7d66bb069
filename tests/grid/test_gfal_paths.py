"""gfal2 writing a tree into ``namespace = paths``, as FTS and a physicist's shell do: mkdir -p,
a copy into a nested path, rename, ls, rm and rmdir, through davix's WebDAV."""

import os
import zlib

import pytest


@pytest.mark.quick
def test_gfal_writes_renames_lists_and_removes_a_tree(paths_server, top, gfal, tmp_path):
    data = os.urandom(200_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    base = paths_server.url + top
    gfal.run("gfal-mkdir", "-p", base + "/x/y/z")
    assert (paths_server.prefix / top[1:] / "x" / "y" / "z").is_dir()
    gfal.run("gfal-copy", f"file://{src}", base + "/x/y/z/file.bin")
    assert (paths_server.prefix / top[1:] / "x/y/z/file.bin").read_bytes() == data
    gfal.run("gfal-rename", base + "/x/y/z/file.bin", base + "/x/y/z/renamed.bin")
    assert gfal.run("gfal-ls", base + "/x/y/z").stdout.split() == ["renamed.bin"]
    summed = gfal.run("gfal-sum", base + "/x/y/z/renamed.bin", "ADLER32").stdout.split()
    assert summed[-1] == f"{zlib.adler32(data):08x}"
    out = tmp_path / "out.bin"
    gfal.run("gfal-copy", base + "/x/y/z/renamed.bin", f"file://{out}")
    assert out.read_bytes() == data
    gfal.run("gfal-rm", base + "/x/y/z/renamed.bin")
    gfal.run("gfal-rm", "-r", base + "/x/y/z")
    assert gfal.run("gfal-ls", base + "/x/y").stdout.split() == []
    assert not (paths_server.prefix / top[1:] / "x" / "y" / "z").exists()


def test_gfal_copy_into_a_missing_collection_makes_it(paths_server, top, gfal, tmp_path):
    """gfal-copy makes the parents itself (MKCOL, level by level) when a PUT says 409."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"nested")
    gfal.run("gfal-copy", "-p", f"file://{src}", paths_server.url + top + "/a/b/c/f")
    assert (paths_server.prefix / top[1:] / "a/b/c/f").read_bytes() == b"nested"
