"""``namespace = paths`` on HPSS (the emulator) through HTTP: collections are HPSS directories
(MKCOL one hpss_Mkdir, DELETE one hpss_Rmdir), MOVE publishes by link or renames, PROPFIND lists
by hpss_Readdir and reports hpss_Statfs of ``[hpss] quota_cos``; a symlink planted in the tree
is never followed.  tests/paths/test_verbs.py checks the same verbs on posix."""

import os
import secrets
import xml.etree.ElementTree as ET

import pytest
import requests
from emulator import emu_cli, stages
from server import wait_until

DAV = "{DAV:}"
PATHS = {"PAI_NAMESPACE": "paths", "PAI_USE_ID2FILENAME": "false"}


def dav(method, url, **kwargs):
    kwargs.setdefault("timeout", 30)
    return requests.request(method, url, **kwargs)


def put(srv, path, data):
    resp = requests.put(srv.url + path, data=data, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp


def listing(srv, path, depth="1"):
    resp = dav("PROPFIND", srv.url + path, headers={"Depth": depth})
    assert resp.status_code == 207, resp.text
    return ET.fromstring(resp.content)


def media(srv, path):
    return requests.head(srv.url + path, timeout=30).headers["X-Pacifica-File-Storage-Media"]


def by_href(root):
    return {response.find(f"{DAV}href").text: response.find(f"{DAV}propstat/{DAV}prop") for response in root}


@pytest.fixture(scope="module")
def srv(hpss_pool):
    """An HPSS archive under paths, write-once, whose quota is the class of service 1."""
    return hpss_pool.start("paths", PAI_HPSS_QUOTA_COS="1", **PATHS)


@pytest.fixture
def top(srv):
    """A fresh top-level collection of ``srv``: its URL path."""
    name = "t" + secrets.token_hex(6)
    assert dav("MKCOL", f"{srv.url}/{name}").status_code == 201
    return "/" + name


def test_mkcol_is_201_405_409(srv, top):
    url = srv.url + top
    assert dav("MKCOL", url + "/a/").status_code == 201
    assert (srv.prefix / top[1:] / "a").is_dir()
    assert dav("MKCOL", url + "/a").status_code == 405  # taken
    put(srv, top + "/f", b"x")
    assert dav("MKCOL", url + "/f").status_code == 405  # a file has the name
    missing = dav("MKCOL", url + "/x/y")
    assert missing.status_code == 409  # never made recursively
    assert not (srv.prefix / top[1:] / "x").exists()
    assert dav("MKCOL", url + "/f/y").status_code == 409  # a file where the parent would be
    assert dav("MKCOL", srv.url + "/").status_code == 405


def test_put_into_a_missing_collection_is_409(srv, top):
    resp = requests.put(srv.url + top + "/none/f", data=b"x" * 1000, timeout=30)
    assert resp.status_code == 409
    assert "MKCOL" in resp.json()["message"]
    assert list((srv.prefix / top[1:]).iterdir()) == []  # no directory made, no temporary file left


def test_put_get_head_of_a_nested_path(srv, top):
    for level in ("/ab", "/ab/cd"):
        assert dav("MKCOL", srv.url + top + level).status_code == 201
    data = os.urandom(70_000)
    put(srv, top + "/ab/cd/file.root", data)
    assert (srv.prefix / top[1:] / "ab" / "cd" / "file.root").read_bytes() == data
    got = requests.get(srv.url + top + "/ab/cd/file.root", timeout=30)
    assert got.status_code == 200 and got.content == data
    head = requests.head(srv.url + top + "/ab/cd/file.root", timeout=30)
    assert head.status_code == 204
    assert head.headers["X-Content-Length"] == str(len(data))
    assert requests.head(srv.url + top + "/ab/none", timeout=30).status_code == 404


def test_a_path_on_tape_is_listed_without_a_stage_and_staged_by_post(srv, top):
    assert dav("MKCOL", srv.url + top + "/ab").status_code == 201
    data = os.urandom(100_000)
    put(srv, top + "/ab/f", data)
    local = str(srv.prefix / top[1:] / "ab" / "f")
    emu_cli(srv.prefix, "purge", local)
    assert media(srv, top + "/ab/f") == "tape"
    levels = requests.head(srv.url + top + "/ab/f", timeout=30).headers["X-Pacifica-Bytes-Per-Level"]
    assert levels == repr((0, len(data), 0, 0, 0))
    props = by_href(listing(srv, top + "/ab/"))
    assert props[top + "/ab/f"].find(f"{DAV}getcontentlength").text == str(len(data))
    info = requests.post(srv.url + "/api/v1/archiveinfo/", json={"paths": [top + "/ab/f"]}, timeout=30).json()
    assert info == [{"path": top + "/ab/f", "locality": "TAPE"}]
    assert stages(srv, local) == 0, "a HEAD, a listing or archiveinfo started a stage"
    assert requests.post(srv.url + top + "/ab/f", timeout=30).status_code == 202
    assert wait_until(lambda: media(srv, top + "/ab/f") == "disk", timeout=15)
    assert requests.get(srv.url + top + "/ab/f", timeout=30).content == data


def test_a_single_segment_is_stored_by_name_not_by_id2filename(srv):
    name = str(secrets.randbits(40) | (1 << 41))  # an integer: a safe name like any other here
    put(srv, "/" + name, b"pacifica")
    assert (srv.prefix / name).read_bytes() == b"pacifica"
    assert requests.get(srv.url + "/" + name, timeout=30).content == b"pacifica"


def test_move_keeps_the_bytes_and_the_checksum(srv, top):
    """Rucio's upload then rename: 201, and the checksum attributes travel with the file."""
    for level in ("/ab", "/cd"):
        assert dav("MKCOL", srv.url + top + level).status_code == 201
    data = os.urandom(5000)
    put(srv, top + "/ab/f.rucio.upload", data)
    before = requests.head(srv.url + top + "/ab/f.rucio.upload", headers={"Want-Digest": "adler32"}, timeout=30)
    assert before.headers["Digest"].lower().startswith("adler32=")
    moved = dav("MOVE", srv.url + top + "/ab/f.rucio.upload", headers={"Destination": srv.url + top + "/cd/f"})
    assert moved.status_code == 201, moved.text
    assert moved.headers["Location"] == top + "/cd/f"
    assert requests.head(srv.url + top + "/ab/f.rucio.upload", timeout=30).status_code == 404
    assert requests.get(srv.url + top + "/cd/f", timeout=30).content == data
    after = requests.head(srv.url + top + "/cd/f", headers={"Want-Digest": "adler32"}, timeout=30)
    assert after.headers["Digest"] == before.headers["Digest"]
    assert sorted(p.name for p in (srv.prefix / top[1:] / "ab").iterdir()) == []


def test_move_never_replaces_under_write_once(srv, top):
    put(srv, top + "/src", b"new")
    put(srv, top + "/dst", b"old")
    url = srv.url + top
    assert dav("MOVE", url + "/src", headers={"Destination": url + "/dst", "Overwrite": "F"}).status_code == 412
    write_once = dav("MOVE", url + "/src", headers={"Destination": url + "/dst"})
    assert write_once.status_code == 409
    assert "write-once" in write_once.json()["message"]
    assert dav("MOVE", url + "/src", headers={"Destination": url + "/none/dst"}).status_code == 409
    assert dav("MOVE", url + "/gone", headers={"Destination": url + "/x"}).status_code == 404
    assert (srv.prefix / top[1:] / "dst").read_bytes() == b"old"
    assert (srv.prefix / top[1:] / "src").read_bytes() == b"new"


def test_move_replaces_only_with_allow_overwrite(fresh_hpss):
    srv = fresh_hpss.start("paths-overwrite", PAI_ALLOW_OVERWRITE="true", **PATHS)
    put(srv, "/src", b"new")
    put(srv, "/dst", b"old")
    assert dav("MOVE", srv.url + "/src", headers={"Destination": "/dst", "Overwrite": "F"}).status_code == 412
    assert dav("MOVE", srv.url + "/src", headers={"Destination": "/dst"}).status_code == 204
    assert (srv.prefix / "dst").read_bytes() == b"new"
    assert not (srv.prefix / "src").exists()


def test_delete_removes_only_empty_collections(srv, top):
    url = srv.url + top
    assert dav("MKCOL", url + "/full").status_code == 201
    put(srv, top + "/full/f", b"kept")
    refused = dav("DELETE", url + "/full/")
    assert refused.status_code == 409
    assert "recursively" in refused.json()["message"]
    assert (srv.prefix / top[1:] / "full" / "f").read_bytes() == b"kept"
    assert dav("DELETE", url + "/full/f").status_code == 200
    assert dav("DELETE", url + "/full/").status_code == 204
    assert not (srv.prefix / top[1:] / "full").exists()
    assert dav("DELETE", url + "/full/").status_code == 404
    assert dav("DELETE", srv.url + "/").status_code == 405


def test_depth_1_lists_files_and_collections(srv, top):
    assert dav("MKCOL", srv.url + top + "/sub").status_code == 201
    put(srv, top + "/one", b"1")
    put(srv, top + "/two", b"22")
    (srv.prefix / top[1:] / ".pyai-tmp-planted").write_bytes(b"half")  # an upload's: never listed
    props = by_href(listing(srv, top + "/"))
    assert sorted(props) == sorted([top + "/", top + "/one", top + "/two", top + "/sub/"])
    two = props[top + "/two"]
    assert two.find(f"{DAV}getcontentlength").text == "2"
    assert len(two.find(f"{DAV}resourcetype")) == 0
    assert two.find("{http://www.dcache.org/2013/webdav}Checksums").text.startswith("adler32=")
    assert props[top + "/sub/"].find(f"{DAV}resourcetype/{DAV}collection") is not None
    assert top + "/" in by_href(listing(srv, "/"))


def test_a_listing_past_max_listing_is_507(fresh_hpss):
    srv = fresh_hpss.start("paths-small-listing", PAI_MAX_LISTING="3", **PATHS)
    for name in ("a", "b"):
        put(srv, "/" + name, b"x")
    assert dav("MKCOL", srv.url + "/c").status_code == 201
    assert len(listing(srv, "/")) == 4  # the root and its three members
    put(srv, "/d", b"x")
    resp = dav("PROPFIND", srv.url + "/", headers={"Depth": "1"})
    assert resp.status_code == 507
    assert "max_listing" in resp.json()["message"]


def test_depth_0_reports_the_quota_of_the_class_of_service(srv):
    """Rucio's read of its space: a PROPFIND Depth 0 of the base (hpss_Statfs of quota_cos;
    the emulator answers for the prefix's file system)."""
    prop = listing(srv, "/", depth="0")[0][1][0]
    used = int(prop.find(f"{DAV}quota-used-bytes").text)
    available = int(prop.find(f"{DAV}quota-available-bytes").text)
    st = os.statvfs(srv.prefix)
    assert used > 0 and 0 < available <= st.f_blocks * st.f_frsize


def test_without_quota_cos_the_quota_is_left_out(fresh_hpss):
    srv = fresh_hpss.start("paths-no-quota", **PATHS)
    prop = listing(srv, "/", depth="0")[0][1][0]
    assert prop.find(f"{DAV}resourcetype/{DAV}collection") is not None
    assert prop.find(f"{DAV}quota-used-bytes") is None
    assert prop.find(f"{DAV}quota-available-bytes") is None


def test_a_symlinked_collection_is_never_followed(srv, top):
    """A link planted where a collection would be, leading to another collection of the tree
    (one the emulator itself would let a path reach): nothing is read, stored, made, moved,
    removed or listed through it."""
    assert dav("MKCOL", srv.url + top + "/real").status_code == 201
    put(srv, top + "/real/secret", b"reached only by its own path")
    put(srv, top + "/f", b"f")
    (srv.prefix / top[1:] / "link").symlink_to(srv.prefix / top[1:] / "real")
    base = srv.url + top + "/link"
    assert requests.get(base + "/secret", timeout=30).status_code == 404
    assert requests.head(base + "/secret", timeout=30).status_code == 404
    assert requests.put(base + "/new", data=b"x", timeout=30).status_code == 403
    assert dav("MKCOL", base + "/sub").status_code == 403
    assert dav("MOVE", srv.url + top + "/f", headers={"Destination": top + "/link/f"}).status_code == 403
    assert dav("MOVE", base + "/secret", headers={"Destination": top + "/g"}).status_code in (403, 404)
    assert dav("PROPFIND", base + "/", headers={"Depth": "1"}).status_code == 404
    assert dav("DELETE", base + "/secret").status_code == 403
    assert sorted(p.name for p in (srv.prefix / top[1:] / "real").iterdir()) == ["secret"]
    assert (srv.prefix / top[1:] / "f").read_bytes() == b"f"
    # the link itself is no member of its collection, and no collection to remove
    assert sorted(by_href(listing(srv, top + "/"))) == sorted([top + "/", top + "/f", top + "/real/"])
    assert dav("DELETE", base + "/").status_code == 404
    assert (srv.prefix / top[1:] / "link").is_symlink()


def test_paths_with_id2filename_still_refuse_to_start(fresh_hpss):
    with pytest.raises(RuntimeError):
        fresh_hpss.start("refused", PAI_NAMESPACE="paths", PAI_USE_ID2FILENAME="true")
    assert "cannot be combined with use_id2filename" in fresh_hpss.servers[-1].log()
