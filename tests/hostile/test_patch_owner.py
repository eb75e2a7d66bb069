"""PATCH takes the file away from its submitter, and never an inode shared with a file outside.

A file moved in keeps its inode; unless the service makes it its own, the
submitter (still its owner) could chmod it writable and rewrite an archived
file.  A source with a second hard link would let a file outside the roots be
archived and then changed through the archive's chmod/chown.  These tests
chown files to another uid, so they need root.
"""

import base64
import hashlib
import os
from pathlib import Path

import pytest
import requests
from faults.mounts import tmpfs
from server import assert_error

OTHER_UID = OTHER_GID = 12345

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the source files belong to another uid")


@pytest.fixture(scope="module")
def owner_setup(make_server, impl, tmp_path_factory):
    base = Path(os.path.realpath(tmp_path_factory.mktemp(f"patch-owner-{impl}")))
    incoming = base / "incoming"
    incoming.mkdir()
    return base, incoming, make_server("owner", PAI_PREFIX=str(base / "prefix"), PAI_PATCH_ROOTS=str(incoming))


def submitted(path, data, mode=0o664):
    path.write_bytes(data)
    os.chown(path, OTHER_UID, OTHER_GID)
    os.chmod(path, mode)
    return path


def test_moved_file_belongs_to_the_service(owner_setup):
    _base, incoming, srv = owner_setup
    data = os.urandom(70000)
    src = submitted(incoming / "mine", data)
    resp = requests.patch(srv.id_url("owned"), json={"path": str(src)}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert not src.exists()
    st = os.lstat(srv.stored_path("owned"))
    # the test runs the server as its own user
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    assert oct(st.st_mode & 0o7777) == oct(0o444)
    assert st.st_nlink == 1
    assert srv.stored_path("owned").read_bytes() == data
    assert requests.get(srv.id_url("owned"), timeout=10).content == data


def test_hard_linked_source_is_refused(owner_setup):
    base, incoming, srv = owner_setup
    outside = base / "outside-file"
    submitted(outside, b"a file outside every root", mode=0o640)
    link = incoming / "hardlink"
    os.link(outside, link)
    resp = requests.patch(srv.id_url("linked"), json={"path": str(link)}, timeout=10)
    assert_error(resp, 403, srv.prefix)
    assert link.exists() and outside.exists()
    st = os.lstat(outside)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_nlink) == (OTHER_UID, OTHER_GID, 0o640, 2)
    assert outside.read_bytes() == b"a file outside every root"
    assert requests.head(srv.id_url("linked"), timeout=10).status_code == 404
    assert not srv.stored_path("linked").exists()
    assert srv.temp_files() == []


def test_copy_across_file_systems_belongs_to_the_service_and_has_a_checksum(fresh_server, tmp_path):
    """A patch root on another file system (a tmpfs): the bytes are copied into a file the
    service owns, its checksum is stored, and the source goes only after the copy."""
    base = Path(os.path.realpath(tmp_path))
    incoming = base / "incoming"
    incoming.mkdir()
    with tmpfs(incoming):
        data = os.urandom(300000)
        src = submitted(incoming / "far", data)
        with fresh_server as pool:  # stopped before the tmpfs is unmounted
            srv = pool.start("xdev", PAI_PREFIX=str(base / "prefix"), PAI_PATCH_ROOTS=str(incoming))
            resp = requests.patch(srv.id_url("copied"), json={"path": str(src)}, timeout=30)
            assert resp.status_code == 200, resp.text
            assert not src.exists()
            st = os.lstat(srv.stored_path("copied"))
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (os.geteuid(), os.getegid(), 0o444)
            get = requests.get(srv.id_url("copied"), timeout=30)
            assert get.content == data
            assert get.headers.get("Digest") == "SHA-256=" + base64.b64encode(hashlib.sha256(data).digest()).decode()
            assert srv.temp_files() == []
