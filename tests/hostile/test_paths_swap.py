"""Under ``namespace = paths``, a collection swapped for a symlink while an upload is in flight.

Someone with access to the file system renames ``<prefix>/<top>/c`` away and puts a symlink
to a directory outside the archive in its place, between the upload's head and its last
byte.  The upload was opened in the directory the path named when it came: it must be
published there (in the renamed directory), and nothing may appear outside the archive.
A later request through the link finds nothing and stores nothing.
"""

import os
import socket
import stat

import pytest
import requests
from server import wait_until


def test_an_upload_finishes_in_the_directory_it_began_in(paths_server, top, tmp_path):
    if paths_server.env["PAI_BACKEND_TYPE"] == "hpss":
        pytest.skip("HPSS resolves paths on its servers: only the service's account writes its namespace")
    outside = tmp_path / "outside"
    outside.mkdir()
    collection = paths_server.prefix / top[1:] / "c"
    assert requests.request("MKCOL", f"{paths_server.url}{top}/c", timeout=10).status_code == 201
    with socket.create_connection(("127.0.0.1", paths_server.port), timeout=30) as sock:
        head = f"PUT {top}/c/f HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode() + b"first")
        # the upload is in flight once its temporary file exists in the collection
        assert wait_until(lambda: any(name.startswith(".pyai-tmp-") for name in os.listdir(collection)), timeout=10)
        moved = collection.with_name("c-real")
        collection.rename(moved)
        collection.symlink_to(outside)
        sock.sendall(b"-last")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert (moved / "f").read_bytes() == b"first-last"
    assert list(outside.iterdir()) == []
    # through the link now: nothing read, nothing stored
    assert requests.get(f"{paths_server.url}{top}/c/f", timeout=10).status_code == 404
    assert requests.put(f"{paths_server.url}{top}/c/g", data=b"x", timeout=10).status_code == 403
    assert list(outside.iterdir()) == []


def test_a_fifo_or_socket_in_a_collection_is_neither_listed_nor_read(paths_server, top):
    base = paths_server.prefix / top[1:]
    os.mkfifo(base / "fifo")
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(base / "sock"))
        assert stat.S_ISSOCK(os.lstat(base / "sock").st_mode)
        listed = requests.request("PROPFIND", f"{paths_server.url}{top}/", headers={"Depth": "1"}, timeout=10)
        assert listed.status_code == 207
        assert b"fifo" not in listed.content and b"sock" not in listed.content
        for name in ("fifo", "sock"):
            assert requests.get(f"{paths_server.url}{top}/{name}", timeout=10).status_code == 404
