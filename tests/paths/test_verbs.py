"""The WebDAV verbs of ``namespace = paths`` against the real server: MKCOL, PUT into a path,
MOVE (Rucio's upload-then-rename), DELETE of collections and PROPFIND listings (RFC 4918),
with the quota properties read the way Rucio reads them (RFC 4331)."""

import http.client
import os
import xml.etree.ElementTree as ET

import pytest
import requests
from dav_client import dav, put

DAV = "{DAV:}"


def raw(srv, method, target, headers=None):
    """A request whose target is sent exactly as written (no client normalises ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def listing(srv, path, depth="1", body=b""):
    resp = dav("PROPFIND", srv.url + path, headers={"Depth": depth}, data=body)
    assert resp.status_code == 207, resp.text
    return resp, ET.fromstring(resp.content)


def hrefs(root):
    return sorted(response.find(f"{DAV}href").text for response in root)


# -- MKCOL ----------------------------------------------------------------------------------


def test_mkcol_makes_one_collection(paths_server, top):
    url = paths_server.url + top
    assert dav("MKCOL", url + "/a/").status_code == 201
    assert (paths_server.prefix / top[1:] / "a").is_dir()
    assert dav("MKCOL", url + "/a").status_code == 405  # taken: what FTS and gfal2 accept as "exists"
    missing = dav("MKCOL", url + "/x/y")
    assert missing.status_code == 409
    assert "MKCOL" in missing.json()["message"]
    assert not (paths_server.prefix / top[1:] / "x").exists()


def test_mkcol_on_a_file_is_405_and_with_a_body_415(paths_server, top):
    put(paths_server, top + "/f", b"x")
    assert dav("MKCOL", paths_server.url + top + "/f").status_code == 405
    resp = dav("MKCOL", paths_server.url + top + "/b", data=b"<mkcol/>")
    assert resp.status_code == 415
    assert resp.headers["Content-Type"] == "application/json"
    assert not (paths_server.prefix / top[1:] / "b").exists()


def test_mkcol_of_the_root_is_405(paths_server):
    assert dav("MKCOL", paths_server.url + "/").status_code == 405


# -- PUT and GET of paths -----------------------------------------------------------------


def test_put_get_head_of_a_nested_path(paths_server, top):
    assert dav("MKCOL", paths_server.url + top + "/ab").status_code == 201
    data = os.urandom(70_000)
    put(paths_server, top + "/ab/file.root", data)
    assert (paths_server.prefix / top[1:] / "ab" / "file.root").read_bytes() == data
    got = requests.get(paths_server.url + top + "/ab/file.root", timeout=30)
    assert got.status_code == 200 and got.content == data
    head = requests.head(paths_server.url + top + "/ab/file.root", timeout=30)
    assert head.status_code == 204
    assert head.headers["X-Content-Length"] == str(len(data))


def test_put_into_a_missing_collection_is_409_before_the_body(paths_server, top, tmp_path):
    """WebDAV's 409: the client MKCOLs first.  curl's Expect: 100-continue is answered with the 409,
    so the body is never sent, and nothing is left under the prefix."""
    src = tmp_path / "big"
    src.write_bytes(os.urandom(2_000_000))
    import subprocess

    proc = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "-T", str(src),
         "-H", "Expect: 100-continue", paths_server.url + top + "/none/f"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    status, uploaded = proc.stdout.split()
    assert status == "409"
    assert float(uploaded) < 2_000_000
    assert sorted(p.name for p in (paths_server.prefix / top[1:]).iterdir()) == []


def test_put_onto_a_collection_is_409(paths_server, top):
    assert dav("MKCOL", paths_server.url + top + "/c").status_code == 201
    resp = requests.put(paths_server.url + top + "/c", data=b"x", timeout=30)
    assert resp.status_code == 409
    assert (paths_server.prefix / top[1:] / "c").is_dir()


def test_a_single_segment_is_an_id_as_before(paths_server, uid):
    put(paths_server, "/" + uid, b"pacifica")
    assert (paths_server.prefix / uid).read_bytes() == b"pacifica"
    assert requests.get(paths_server.id_url(uid), timeout=30).content == b"pacifica"
    staged = requests.post(paths_server.id_url(uid), timeout=30)
    assert staged.status_code == 200 and staged.json()["message"] == "File was staged"


@pytest.mark.parametrize(
    "target",
    ["/%s/../x", "/%s/.hidden", "/%s/a%%2Fb", "/%s//x", "/%s/a%%2fb/c"],
    ids=["dotdot", "dotname", "encoded-slash", "empty-segment", "encoded-slash-lower"],
)
def test_unsafe_segments_are_400(paths_server, top, target):
    status, body = raw(paths_server, "PUT", target % top[1:], {"Content-Length": "1"})
    assert status == 400, body
    assert b"Traceback" not in body and str(paths_server.prefix).encode() not in body
    assert list((paths_server.prefix / top[1:]).iterdir()) == []


# -- symlinks planted in the tree are never followed ---------------------------------------


def test_a_symlinked_collection_is_never_followed(paths_server, top, tmp_path):
    """A link planted where a collection would be (by someone with access to the file system):
    nothing is read, stored, made or listed through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not the archive's")
    (paths_server.prefix / top[1:] / "link").symlink_to(outside)
    base = paths_server.url + top + "/link"
    assert requests.get(base + "/secret", timeout=30).status_code == 404
    assert requests.head(base + "/secret", timeout=30).status_code == 404
    assert requests.put(base + "/new", data=b"x", timeout=30).status_code == 403
    assert dav("MKCOL", base + "/sub").status_code == 403
    assert dav("PROPFIND", base + "/", headers={"Depth": "1"}).status_code == 404
    assert dav("DELETE", base + "/secret").status_code in (403, 404)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"not the archive's"


# -- MOVE ---------------------------------------------------------------------------------


def test_rucio_upload_then_move_is_201(paths_server, top):
    """Rucio PUTs <pfn>.rucio.upload, then MOVEs it to <pfn> and wants exactly 201."""
    pfn = top + "/ab/cd/file.root"
    for level in (top + "/ab", top + "/ab/cd"):
        assert dav("MKCOL", paths_server.url + level).status_code == 201
    data = os.urandom(5000)
    put(paths_server, pfn + ".rucio.upload", data)
    stored = requests.head(paths_server.url + pfn + ".rucio.upload", headers={"Want-Digest": "adler32"}, timeout=30)
    moved = dav("MOVE", paths_server.url + pfn + ".rucio.upload", headers={"Destination": paths_server.url + pfn})
    assert moved.status_code == 201, moved.text
    assert moved.headers["Location"] == pfn
    assert requests.get(paths_server.url + pfn, timeout=30).content == data
    assert requests.head(paths_server.url + pfn + ".rucio.upload", timeout=30).status_code == 404
    after = requests.head(paths_server.url + pfn, headers={"Want-Digest": "adler32"}, timeout=30)
    assert after.headers["Digest"] == stored.headers["Digest"]


def test_move_to_a_path_destination_across_collections(paths_server, top):
    for name in ("a", "b"):
        assert dav("MKCOL", f"{paths_server.url}{top}/{name}").status_code == 201
    put(paths_server, top + "/a/f", b"moving")
    assert dav("MOVE", paths_server.url + top + "/a/f", headers={"Destination": top + "/b/g"}).status_code == 201
    assert not (paths_server.prefix / top[1:] / "a" / "f").exists()
    assert (paths_server.prefix / top[1:] / "b" / "g").read_bytes() == b"moving"


def test_move_onto_an_existing_file_is_refused_under_write_once(paths_server, top):
    put(paths_server, top + "/src", b"new")
    put(paths_server, top + "/dst", b"old")
    url = paths_server.url + top
    refused = dav("MOVE", url + "/src", headers={"Destination": url + "/dst", "Overwrite": "F"})
    assert refused.status_code == 412
    write_once = dav("MOVE", url + "/src", headers={"Destination": url + "/dst"})
    assert write_once.status_code == 409
    assert "write-once" in write_once.json()["message"]
    assert (paths_server.prefix / top[1:] / "dst").read_bytes() == b"old"
    assert (paths_server.prefix / top[1:] / "src").read_bytes() == b"new"


def test_move_replaces_only_with_allow_overwrite(fresh_server_paths):
    srv = fresh_server_paths
    put(srv, "/src", b"new")
    put(srv, "/dst", b"old")
    assert dav("MOVE", srv.url + "/src", headers={"Destination": "/dst", "Overwrite": "F"}).status_code == 412
    replaced = dav("MOVE", srv.url + "/src", headers={"Destination": "/dst"})
    assert replaced.status_code == 204
    assert (srv.prefix / "dst").read_bytes() == b"new"
    assert not (srv.prefix / "src").exists()


@pytest.fixture
def fresh_server_paths(server_pool, request):
    return server_pool(request).start("paths-overwrite", PAI_NAMESPACE="paths", PAI_ALLOW_OVERWRITE="true")


@pytest.mark.parametrize(
    ("source", "destination", "status"),
    [
        ("/f", None, 400),  # no Destination
        ("/f", "/f", 403),  # onto itself
        ("/none", "/g", 404),  # no such source
        ("/f", "/missing/g", 409),  # no parent
        ("/f", "/a%2Fb", 400),  # an encoded slash
        ("/f", "/api/v1/g", 403),  # a path of another route
        ("/f", "ftp://host/g", 400),
        ("/c", "/d", 403),  # a collection is not moved
    ],
    ids=["no-destination", "itself", "no-source", "no-parent", "encoded-slash", "reserved", "ftp", "collection"],
)
def test_move_refusals(paths_server, top, source, destination, status):
    put(paths_server, top + "/f", b"f")
    assert dav("MKCOL", paths_server.url + top + "/c").status_code == 201
    headers = {}
    if destination is not None:
        outside = destination.startswith(("ftp:", "/api/"))  # named as is, not below the test's collection
        headers["Destination"] = destination if outside else top + destination
    resp = dav("MOVE", paths_server.url + top + source, headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    assert (paths_server.prefix / top[1:] / "f").read_bytes() == b"f"


def test_move_with_a_bad_overwrite_is_400(paths_server, top):
    put(paths_server, top + "/f", b"f")
    resp = dav("MOVE", paths_server.url + top + "/f", headers={"Destination": top + "/g", "Overwrite": "yes"})
    assert resp.status_code == 400


def test_patch_into_a_missing_collection_is_409_and_moves_nothing(paths_server, top):
    """Pacifica's PATCH (a server-side file moved under an id) makes no collection either."""
    put(paths_server, top + "/f", b"patched")
    source = str(paths_server.prefix / top[1:] / "f")
    resp = requests.patch(paths_server.url + top + "/none/g", json={"path": source}, timeout=30)
    assert resp.status_code == 409
    assert (paths_server.prefix / top[1:] / "f").read_bytes() == b"patched"
    assert not (paths_server.prefix / top[1:] / "none").exists()
    assert dav("MKCOL", paths_server.url + top + "/some").status_code == 201
    moved = requests.patch(paths_server.url + top + "/some/g", json={"path": source}, timeout=30)
    assert moved.status_code == 200
    assert (paths_server.prefix / top[1:] / "some" / "g").read_bytes() == b"patched"


# -- DELETE -------------------------------------------------------------------------------


def test_delete_removes_only_empty_collections(paths_server, top):
    url = paths_server.url + top
    assert dav("MKCOL", url + "/full").status_code == 201
    put(paths_server, top + "/full/f", b"kept")
    refused = dav("DELETE", url + "/full/")
    assert refused.status_code == 409
    assert "recursively" in refused.json()["message"]
    assert (paths_server.prefix / top[1:] / "full" / "f").read_bytes() == b"kept"
    assert dav("DELETE", url + "/full/f").status_code == 200
    assert dav("DELETE", url + "/full/").status_code == 204
    assert not (paths_server.prefix / top[1:] / "full").exists()
    assert dav("DELETE", url + "/full/").status_code == 404


def test_delete_of_the_root_is_405(paths_server):
    assert dav("DELETE", paths_server.url + "/").status_code == 405


# -- PROPFIND -----------------------------------------------------------------------------


def test_depth_1_lists_members_with_their_properties(paths_server, top):
    url = paths_server.url + top
    assert dav("MKCOL", url + "/sub").status_code == 201
    put(paths_server, top + "/one", b"1")
    put(paths_server, top + "/two", b"22")
    resp, root = listing(paths_server, top + "/")
    assert resp.headers.get("Transfer-Encoding") == "chunked"  # streamed, not built whole
    assert hrefs(root) == sorted([top + "/", top + "/one", top + "/two", top + "/sub/"])
    by_href = {response.find(f"{DAV}href").text: response for response in root}
    two = by_href[top + "/two"].find(f"{DAV}propstat/{DAV}prop")
    assert two.find(f"{DAV}getcontentlength").text == "2"
    assert two.find(f"{DAV}resourcetype") is not None and len(two.find(f"{DAV}resourcetype")) == 0
    assert two.find("{http://www.dcache.org/2013/webdav}Checksums").text.startswith("adler32=")
    sub = by_href[top + "/sub/"].find(f"{DAV}propstat/{DAV}prop")
    assert sub.find(f"{DAV}resourcetype/{DAV}collection") is not None


def test_depth_0_of_a_file_under_a_path(paths_server, top):
    put(paths_server, top + "/f", b"abc")
    _, root = listing(paths_server, top + "/f", depth="0")
    assert hrefs(root) == [top + "/f"]


def test_the_base_answers_rucio_s_quota_read(paths_server):
    """Rucio's get_space_usage: an empty-body PROPFIND Depth 0 of the base, then root[0][1][0]."""
    resp = dav("PROPFIND", paths_server.url + "/", headers={"Depth": "0"})
    assert resp.status_code == 207
    prop = ET.fromstring(resp.content)[0][1][0]
    used = int(prop.find(f"{DAV}quota-used-bytes").text)
    available = int(prop.find(f"{DAV}quota-available-bytes").text)
    st = os.statvfs(paths_server.prefix)
    assert used > 0 and 0 < available <= st.f_blocks * st.f_frsize


def test_depth_1_of_the_root_lists_it(paths_server, top):
    _, root = listing(paths_server, "/")
    assert top + "/" in hrefs(root)


@pytest.mark.parametrize("depth", ["infinity", None])
def test_a_listing_of_the_whole_tree_is_403(paths_server, top, depth):
    headers = {} if depth is None else {"Depth": depth}
    assert dav("PROPFIND", paths_server.url + top + "/", headers=headers).status_code == 403


def test_a_listing_past_max_listing_is_507_before_anything_is_sent(server_pool, request):
    srv = server_pool(request).start("paths-small-listing", PAI_NAMESPACE="paths", PAI_MAX_LISTING="3")
    for name in ("a", "b", "c"):
        put(srv, "/" + name, b"x")
    _, root = listing(srv, "/")
    assert len(root) == 4  # the root and its three members
    put(srv, "/d", b"x")
    resp = dav("PROPFIND", srv.url + "/", headers={"Depth": "1"})
    assert resp.status_code == 507
    assert "max_listing" in resp.json()["message"]


def test_temporary_files_are_never_listed(paths_server, top):
    (paths_server.prefix / top[1:] / ".pyai-tmp-planted").write_bytes(b"half")
    _, root = listing(paths_server, top)
    assert hrefs(root) == [top + "/"]


def test_options_lists_the_verbs(paths_server, top):
    resp = requests.options(paths_server.url + top + "/", timeout=30)
    allowed = {method.strip() for method in resp.headers["Allow"].split(",")}
    assert {"MKCOL", "MOVE", "PROPFIND", "PUT", "DELETE", "GET", "HEAD"} <= allowed
    assert resp.headers["DAV"] == "1"


# -- the ids namespace is unchanged ---------------------------------------------------------


def test_ids_namespace_has_no_collection_verbs(server, uid):
    if server.env.get("PAI_BACKEND_TYPE") != "posix":
        pytest.skip("one backend shows it")
    resp = dav("MKCOL", server.url + "/" + uid)
    assert resp.status_code == 405
    assert "MKCOL" not in resp.headers["Allow"]
    assert requests.get(server.url + "/a/b", timeout=30).status_code == 404
