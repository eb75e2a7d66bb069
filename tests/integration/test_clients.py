"""The documented curl and wget commands, run as real subprocesses."""

import json
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(
    not (shutil.which("curl") and shutil.which("wget")), reason="curl and wget are required"
)


def run(args, **kw):
    proc = subprocess.run(args, capture_output=True, timeout=60, **kw)
    assert proc.returncode == 0, (args, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def curl_put(server, ident, path, *extra):
    out = run(["curl", "-sS", "-T", str(path), *extra, server.id_url(ident)]).stdout
    return json.loads(out)


@pytest.mark.quick
def test_curl_put_get(server, uid, payload, tmp_path):
    path, data = payload
    body = curl_put(server, uid, path)
    assert body["message"] == "File added to archive"
    assert body["total_bytes"] == len(data)
    out = tmp_path / "out.bin"
    run(["curl", "-sS", "-f", "-o", str(out), server.id_url(uid)])
    assert out.read_bytes() == data


def test_curl_put_from_stdin_chunked(server, uid, payload):
    path, data = payload
    with open(path, "rb") as stdin:
        out = run(["curl", "-sS", "-T", "-", server.id_url(uid)], stdin=stdin).stdout
    assert json.loads(out)["total_bytes"] == len(data)
    assert server.stored_path(uid).read_bytes() == data


def test_curl_head(server, uid, payload):
    path, data = payload
    curl_put(server, uid, path)
    out = run(["curl", "-sS", "-I", server.id_url(uid)]).stdout.decode()
    lines = out.replace("\r", "").split("\n")
    assert lines[0].split()[1] == "204", out
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)}
    assert headers["x-pacifica-messsage"] == "File was found"
    assert headers["x-content-length"] == str(len(data))
    assert headers["x-pacifica-file-storage-media"] == "disk"


def test_curl_head_missing(server, uid):
    out = run(["curl", "-sS", "-I", server.id_url(uid)]).stdout.decode()
    assert out.split()[1] == "404"
    assert "X-Pacifica-Messsage: File Not found".lower() in out.lower()


def test_curl_post(server, uid, payload):
    path, _ = payload
    curl_put(server, uid, path)
    out = run(["curl", "-sS", "-X", "POST", server.id_url(uid)]).stdout
    assert json.loads(out) == {"message": "File was staged", "file": uid}


def test_curl_range(server, uid, payload, tmp_path):
    path, data = payload
    curl_put(server, uid, path)
    part = tmp_path / "part"
    run(["curl", "-sS", "-f", "-r", "0-99", "-o", str(part), server.id_url(uid)])
    assert part.read_bytes() == data[:100]
    run(["curl", "-sS", "-f", "-r", "1000-", "-o", str(part), server.id_url(uid)])
    assert part.read_bytes() == data[1000:]


def test_curl_resume(server, uid, payload, tmp_path):
    path, data = payload
    curl_put(server, uid, path)
    out = tmp_path / "resumed"
    out.write_bytes(data[: len(data) // 2])
    run(["curl", "-sS", "-f", "-C", "-", "-o", str(out), server.id_url(uid)])
    assert out.read_bytes() == data


def test_wget_continue(server, uid, payload, tmp_path):
    path, data = payload
    curl_put(server, uid, path)
    out = tmp_path / "wgot"
    out.write_bytes(data[: len(data) // 3])
    run(["wget", "-q", "-c", "-O", str(out), server.id_url(uid)], env={**os.environ, "HOME": str(tmp_path)})
    assert out.read_bytes() == data


def test_wget_whole(server, uid, payload, tmp_path):
    path, data = payload
    curl_put(server, uid, path)
    out = tmp_path / "wfull"
    run(["wget", "-q", "-O", str(out), server.id_url(uid)], env={**os.environ, "HOME": str(tmp_path)})
    assert out.read_bytes() == data


def test_curl_patch(server, uid, tmp_path):
    # the default server allows moves from under its prefix only
    src_dir = server.prefix / "incoming"
    src_dir.mkdir(exist_ok=True)
    src = src_dir / f"src-{uid}"
    src.write_bytes(b"moved by curl")
    out = run(
        [
            "curl",
            "-sS",
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"path": str(src)}),
            server.id_url(uid),
        ]
    ).stdout
    assert json.loads(out) == {"message": "File Moved Successfully"}
    assert not src.exists()
    got = run(["curl", "-sS", "-f", server.id_url(uid)]).stdout
    assert got == b"moved by curl"


def test_curl_delete(server, uid, payload):
    path, _ = payload
    curl_put(server, uid, path)
    run(["curl", "-sS", "-f", "-X", "DELETE", server.id_url(uid)])
    assert not server.stored_path(uid).exists()
    out = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-I", server.id_url(uid)]).stdout
    assert out == b"404"


def test_curl_put_last_modified(server, uid, tmp_path):
    src = tmp_path / "dated"
    src.write_bytes(b"old file")
    body = curl_put(server, uid, src, "-H", "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT")
    assert body["total_bytes"] == 8
    assert server.stored_path(uid).stat().st_mtime == 784111777
    # curl -R sets the local file's time from the server's Last-Modified
    out = tmp_path / "fetched"
    run(["curl", "-sS", "-f", "-R", "-o", str(out), server.id_url(uid)])
    assert out.stat().st_mtime == 784111777


def test_curl_put_conflict_reports_409(server, uid, payload, tmp_path):
    path, data = payload
    curl_put(server, uid, path)
    other = tmp_path / "other.bin"
    other.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other bytes: no identical retry
    out = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(other), server.id_url(uid)]).stdout
    assert out == b"409"
