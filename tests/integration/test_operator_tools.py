"""The operator's tools on archives filled through the real server: ``ls``, ``du``, ``stat`` and
``verify --add-missing``, on posix (both I/O paths) and on hpss (the emulator).

The command is run from this checkout (``python -c ... cmd_main()`` with the checkout as the
working directory), with the server's own environment and its ``--prefix``.
"""

import hashlib
import json
import os
import sys
import zlib

import requests

from .test_config import run_cli

CMD = [sys.executable, "-c", "import sys; from pyai.admin.cli import cmd_main; sys.exit(cmd_main())"]


def cli(srv, *args, **settings):
    """(exit status, stdout, stderr) of a command against ``srv``'s archive, in its environment
    with ``settings`` changed."""
    return run_cli([*CMD, *args, "--prefix", str(srv.prefix)], {**srv.env, **settings})


def put(srv, ident, data):
    resp = requests.put(srv.id_url(ident), data=data, timeout=30)
    assert resp.status_code == 201, resp.text


def fill(srv, uid):
    """Three files through the server, and beside them what is no id: a symlink to a stored
    file, a symlinked directory (the archive's own on posix: a loop if followed), a state
    directory, a temporary upload, a dot file, a file in a directory no id reaches.
    ``{id: bytes}`` of the files stored."""
    files = {uid: b"first file", uid + "1": os.urandom(70_000), uid + "2": b""}
    for ident, data in files.items():
        put(srv, ident, data)
    os.symlink(srv.stored_path(uid), srv.prefix / "a-link")
    os.symlink(srv.stored_path(uid).parent, srv.prefix / "dirlink")
    (srv.prefix / ".pyai-state").mkdir(exist_ok=True)
    (srv.prefix / ".pyai-state" / "123").write_bytes(b"state")
    (srv.prefix / ".pyai-tmp-dead").write_bytes(b"half an upload")
    (srv.prefix / ".hidden").write_bytes(b"x")
    (srv.prefix / "no-id-here").mkdir()
    (srv.prefix / "no-id-here" / "10").write_bytes(b"left by an operator: no id reaches it")
    return files


def test_ls_du_and_stat_see_the_stored_ids_only(make_server, uid, backend):
    srv = make_server("tools")
    files = fill(srv, uid)
    rc, out, err = cli(srv, "ls")
    assert rc == 0, err
    assert sorted(out.split()) == sorted(files)
    assert "listed 3 files" in err  # progress and the count, on stderr

    rc, out, err = cli(srv, "ls", "--json")
    assert rc == 0, err
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == sorted(files)

    rc, out, err = cli(srv, "ls", "--long")
    assert rc == 0, err
    lines = {line.split()[-1]: line.split() for line in out.splitlines()}
    assert sorted(lines) == sorted(files)
    for ident, data in files.items():
        size, _mtime, media, digests, _ident = lines[ident]
        assert int(size) == len(data) and media == "disk"
        assert "sha256" in digests.split(",")  # every PUT keeps the configured ones

    rc, out, err = cli(srv, "ls", "--long", "--json")
    assert rc == 0, err
    records = {record["id"]: record for record in map(json.loads, out.splitlines())}
    assert sorted(records) == sorted(files)
    for ident, data in files.items():
        record = records[ident]
        assert record["size"] == len(data) and record["media"] == "disk"
        assert record["checksums"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["path"] == str(srv.stored_path(ident))

    total = sum(len(data) for data in files.values())
    rc, out, err = cli(srv, "du")
    assert rc == 0, err
    assert out.splitlines()[-1].startswith(f"3 file(s), {total} bytes")
    assert "counted 3 files" in err
    rc, out, err = cli(srv, "du", "--media", "--json")
    assert rc == 0, err
    usage = json.loads(out)
    assert usage["files"] == 3 and usage["bytes"] == total
    assert usage["media"] == {"disk": {"files": 3, "bytes": total}}
    assert usage["bytes_per_level"][0] == total


def test_stat_says_what_head_says(make_server, uid):
    srv = make_server("stat")
    data = os.urandom(5000)
    put(srv, uid, data)
    head = requests.head(srv.id_url(uid), timeout=10).headers
    rc, out, err = cli(srv, "stat", uid, "--json")
    assert rc == 0, err
    record = json.loads(out)
    assert record["id"] == uid
    assert record["path"] == head["X-Pacifica-File"]
    assert str(record["size"]) == head["X-Content-Length"]
    assert repr(float(record["mtime"])) == head["Last-Modified"]
    assert repr(float(record["ctime"])) == head["X-Pacifica-Ctime"]
    assert repr(tuple(record["bytes_per_level"])) == head["X-Pacifica-Bytes-Per-Level"]
    assert record["media"] == head["X-Pacifica-File-Storage-Media"] == "disk"
    assert record["etag"] == head["ETag"]
    assert record["locality"] == "DISK"
    assert record["checksums"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["checksums"]["adler32"] == f"{zlib.adler32(data):08x}"
    rc, out, err = cli(srv, "stat", uid)
    assert rc == 0, err
    assert f"size: {len(data)}" in out and f"sha256: {hashlib.sha256(data).hexdigest()}" in out
    assert "locality: DISK" in out


def test_stat_of_an_absent_or_invalid_id_fails(make_server, uid):
    srv = make_server("stat-absent")
    rc, out, err = cli(srv, "stat", uid)
    assert rc == 1 and out == "" and "no file is stored under this id" in err
    rc, out, err = cli(srv, "stat", "../etc")
    assert rc == 2 and out == "" and "invalid id" in err


def test_add_missing_backfills_patched_and_placed_files(make_server, uid, tmp_path_factory):
    root = tmp_path_factory.mktemp("incoming")
    srv = make_server("backfill", PAI_PATCH_ROOTS=str(root))
    put(srv, uid, b"stored by PUT")
    moved = os.urandom(40_000)
    (root / "moved").write_bytes(moved)
    resp = requests.patch(srv.id_url(uid + "1"), json={"path": str(root / "moved")}, timeout=10)
    assert resp.status_code == 200, resp.text
    placed = srv.stored_path(uid + "2")  # an original deployment's file: no checksum kept anywhere
    placed.parent.mkdir(parents=True, exist_ok=True)
    placed.write_bytes(b"from the original service")
    os.chmod(placed, 0o444)
    without = {str(srv.stored_path(uid + "1")), str(placed)}

    rc, out, err = cli(srv, "verify", "--all")
    assert rc == 0, err
    assert {line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("NO CHECKSUM")} == without

    rc, out, err = cli(srv, "verify", "--all", "--add-missing")
    assert rc == 0, (out, err)
    assert {line.split(" ")[1].rstrip(":") for line in out.splitlines() if line.startswith("ADDED")} == without
    assert "NO CHECKSUM" not in out and "3 ok" in out and "2 given missing checksums" in out

    rc, out, err = cli(srv, "verify", "--all")
    assert rc == 0, err
    assert "NO CHECKSUM" not in out and "3 file(s): 3 ok" in out
    # what was kept is what HEAD and GET now send
    rc, out, err = cli(srv, "stat", uid + "1", "--json")
    assert json.loads(out)["checksums"]["sha256"] == hashlib.sha256(moved).hexdigest()
    head = requests.head(srv.id_url(uid + "1"), timeout=10)
    assert head.status_code == 204 and "Digest" in head.headers


def test_add_missing_keeps_nothing_for_a_damaged_file(make_server, uid):
    """A file whose bytes no longer match its stored checksum gets no new one (that would bless the damage)."""
    srv = make_server("damaged", PAI_CHECKSUM="sha256")
    put(srv, uid, b"some bytes to damage")
    path = srv.stored_path(uid)
    os.chmod(path, 0o644)
    path.write_bytes(b"Some bytes to damage")
    os.chmod(path, 0o444)
    more = {"PAI_CHECKSUM": "sha256, md5"}  # md5 is missing from the file: --add-missing would add it
    rc, out, err = cli(srv, "verify", uid, "--add-missing", **more)
    assert rc == 1 and f"MISMATCH {uid}" in out and "ADDED" not in out, (out, err)
    rc, out, err = cli(srv, "stat", uid, "--json")
    assert list(json.loads(out)["checksums"]) == ["sha256"]
