"""PATCH moves a server-side file into the archive, only from allowed places."""

import json
import os

import pytest
import requests
from server import assert_error


@pytest.fixture(scope="module")
def patchsrv(make_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("patchroots")
    root = base / "root"
    other = base / "other"
    sibling = base / "rootX"  # shares the prefix of the string "root"
    outside = base / "outside"
    for d in (root, other, sibling, outside):
        d.mkdir()
    srv = make_server("patch", PAI_PATCH_ROOTS=os.pathsep.join([str(root), str(other)]))
    srv.roots = {"root": root, "other": other, "sibling": sibling, "outside": outside}
    return srv


def patch(srv, ident, body):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.patch(srv.id_url(ident), data=data, headers={"Content-Type": "application/json"}, timeout=10)


@pytest.mark.parametrize("where", ["root", "other"])
@pytest.mark.quick
def test_patch_moves_from_root(patchsrv, uid, where):
    src = patchsrv.roots[where] / f"incoming-{uid}"
    data = os.urandom(3000)
    src.write_bytes(data)
    resp = patch(patchsrv, uid, {"path": str(src)})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"message": "File Moved Successfully"}
    assert not src.exists()
    assert patchsrv.stored_path(uid).read_bytes() == data
    get = requests.get(patchsrv.id_url(uid), timeout=10)
    assert get.status_code == 200 and get.content == data
    head = requests.head(patchsrv.id_url(uid), timeout=10)
    assert head.status_code == 204
    assert head.headers["X-Content-Length"] == "3000"


def test_patch_from_under_prefix(patchsrv, uid):
    staging = patchsrv.prefix / "staging-dir"
    staging.mkdir(exist_ok=True)
    src = staging / f"f-{uid}"
    src.write_bytes(b"from the prefix")
    resp = patch(patchsrv, uid, {"path": str(src)})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"message": "File Moved Successfully"}
    assert not src.exists()
    assert requests.get(patchsrv.id_url(uid), timeout=10).content == b"from the prefix"


def test_patch_nested_dir_in_root(patchsrv, uid):
    nested = patchsrv.roots["root"] / "a" / "b"
    nested.mkdir(parents=True, exist_ok=True)
    src = nested / f"deep-{uid}"
    src.write_bytes(b"deep")
    resp = patch(patchsrv, uid, {"path": str(src)})
    assert resp.status_code == 200, resp.text
    assert not src.exists()
    assert requests.get(patchsrv.id_url(uid), timeout=10).content == b"deep"


def test_patch_etc_passwd_forbidden(patchsrv, uid):
    before = open("/etc/passwd", "rb").read()
    resp = patch(patchsrv, uid, {"path": "/etc/passwd"})
    assert_error(resp, 403, patchsrv.prefix)
    assert open("/etc/passwd", "rb").read() == before
    assert requests.head(patchsrv.id_url(uid), timeout=10).status_code == 404
    assert not patchsrv.stored_path(uid).exists()


@pytest.mark.parametrize("where", ["outside", "sibling"])  # sibling: its name begins with a root's
def test_patch_outside_every_root_forbidden(patchsrv, uid, where):
    src = patchsrv.roots[where] / f"{where}-{uid}"
    src.write_bytes(where.encode())
    resp = patch(patchsrv, uid, {"path": str(src)})
    assert_error(resp, 403, patchsrv.prefix)
    assert src.read_bytes() == where.encode()
    assert requests.head(patchsrv.id_url(uid), timeout=10).status_code == 404


def test_patch_symlink_escaping_root_forbidden(patchsrv, uid):
    target = patchsrv.roots["outside"] / f"secret-{uid}"
    target.write_bytes(b"secret")
    link = patchsrv.roots["root"] / f"link-{uid}"
    link.symlink_to(target)
    resp = patch(patchsrv, uid, {"path": str(link)})
    assert_error(resp, 403, patchsrv.prefix)
    assert target.read_bytes() == b"secret"
    assert link.is_symlink()
    assert requests.head(patchsrv.id_url(uid), timeout=10).status_code == 404


def test_patch_dotdot_escaping_root_forbidden(patchsrv, uid):
    target = patchsrv.roots["outside"] / f"dd-{uid}"
    target.write_bytes(b"dotdot")
    sneaky = f"{patchsrv.roots['root']}/../outside/dd-{uid}"
    resp = patch(patchsrv, uid, {"path": sneaky})
    assert_error(resp, 403, patchsrv.prefix)
    assert target.read_bytes() == b"dotdot"


def test_patch_directory_forbidden(patchsrv, uid):
    d = patchsrv.roots["root"] / f"dir-{uid}"
    d.mkdir()
    resp = patch(patchsrv, uid, {"path": str(d)})
    assert_error(resp, 403, patchsrv.prefix)
    assert d.is_dir()


def test_patch_missing_source_404(patchsrv, uid):
    resp = patch(patchsrv, uid, {"path": str(patchsrv.roots["root"] / f"nothing-{uid}")})
    assert_error(resp, 404, patchsrv.prefix)
    assert not patchsrv.stored_path(uid).exists()


def test_patch_missing_source_under_prefix_404(patchsrv, uid):
    resp = patch(patchsrv, uid, {"path": str(patchsrv.prefix / f"not-there-{uid}")})
    assert_error(resp, 404, patchsrv.prefix)


def test_patch_target_exists_409(patchsrv, uid):
    assert requests.put(patchsrv.id_url(uid), data=b"original", timeout=10).status_code == 201
    src = patchsrv.roots["root"] / f"dup-{uid}"
    src.write_bytes(b"newcomer")
    resp = patch(patchsrv, uid, {"path": str(src)})
    assert_error(resp, 409, patchsrv.prefix)
    assert src.read_bytes() == b"newcomer"
    assert requests.get(patchsrv.id_url(uid), timeout=10).content == b"original"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"pat": "/x"}', b"[1, 2]", b""])
def test_patch_bad_body_400(patchsrv, uid, body):
    resp = patch(patchsrv, uid, body)
    assert_error(resp, 400, patchsrv.prefix)
    assert not patchsrv.stored_path(uid).exists()


def chunks(data, size=1000):
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_patch_body_over_its_cap_is_413(patchsrv, uid, framing):
    """As every small body over its cap (PROPFIND's, the Tape API's): 413, the connection closed."""
    body = json.dumps({"path": "/x" * 40_000}).encode()
    data = body if framing == "length" else chunks(body)
    resp = requests.patch(patchsrv.id_url(uid), data=data, timeout=10)
    assert_error(resp, 413, patchsrv.prefix)
    assert resp.headers.get("Connection") == "close"


def test_patch_invalid_id_400(patchsrv):
    src = patchsrv.roots["root"] / "for-invalid-id"
    src.write_bytes(b"x")
    resp = patch(patchsrv, ".hidden", {"path": str(src)})
    assert_error(resp, 400, patchsrv.prefix)
    assert src.exists()


def test_patch_default_server_only_prefix(server, uid, tmp_path):
    """Without patch_roots only the prefix is allowed."""
    src = tmp_path / "elsewhere"
    src.write_bytes(b"elsewhere")
    resp = patch(server, uid, {"path": str(src)})
    assert_error(resp, 403, server.prefix)
    assert src.exists()


@pytest.mark.parametrize(
    "tail",
    ["x" * 5000, "/".join(["d" * 200] * 30), "loop"],
    ids=["long-name", "long-path", "symlink-loop"],
)
def test_unresolvable_sources_under_the_prefix_are_client_errors(server, uid, tail):
    if tail == "loop":  # a -> b -> a, inside the prefix
        for a, b in (("loop", f"loop-{uid}"), (f"loop-{uid}", "loop")):
            link = server.prefix / a
            if not link.is_symlink():
                link.symlink_to(server.prefix / b)
    resp = requests.patch(server.id_url(uid), json={"path": f"{server.prefix}/{tail}"}, timeout=10)
    assert 400 <= resp.status_code < 500, resp.text
    assert "Traceback" not in resp.text
