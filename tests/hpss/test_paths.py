"""``namespace = paths`` on HPSS (the emulator) through HTTP, what only HPSS has: files on tape
listed without a stage, names stored by path (not id2filename), the quota of ``[hpss] quota_cos``
from hpss_Statfs.  The verbs themselves (MKCOL, MOVE, DELETE, PROPFIND, symlinks) run on every
backend in tests/paths/test_verbs.py."""

import os
import secrets
import xml.etree.ElementTree as ET

import pytest
import requests
from dav_client import dav, put
from emulator import emu_cli, stages
from server import wait_until

DAV = "{DAV:}"
PATHS = {"PAI_NAMESPACE": "paths", "PAI_USE_ID2FILENAME": "false"}


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


def test_paths_with_id2filename_still_refuse_to_start(fresh_hpss):
    with pytest.raises(RuntimeError):
        fresh_hpss.start("refused", PAI_NAMESPACE="paths", PAI_USE_ID2FILENAME="true")
    assert "cannot be combined with use_id2filename" in fresh_hpss.servers[-1].log()
