"""Serving a range reads the range, not the file: with sendfile and without it.

The kernel counts every byte a process reads (``rchar`` in /proc/<pid>/io,
sendfile included), so the workers' count shows how much of the file was
touched to answer.
"""

from pathlib import Path

import pytest
import requests

MiB = 1 << 20
FILE_SIZE = 64 * MiB


def workers_read_bytes(master_pid):
    total = 0
    for child in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                total += int(line.split()[1])
    return total


@pytest.fixture(scope="module", params=["sendfile", "no-sendfile"])
def big_file_server(request, make_server):
    settings = {"SENDFILE": "0"} if request.param == "no-sendfile" else {}
    srv = make_server(f"range-{request.param}", **settings)
    url = srv.id_url("4096")  # an integer: valid under every id scheme
    resp = requests.put(url, data=b"\x5a" * FILE_SIZE, timeout=60)
    assert resp.status_code == 201, resp.text
    return srv, url


@pytest.mark.parametrize(
    "headers,params,expected",
    [
        ({"Range": f"bytes={32 * MiB}-{33 * MiB - 1}"}, None, MiB),
        ({"Range": "bytes=0-99"}, None, 100),
        ({}, {"byte_range": f"{10 * MiB}-{11 * MiB}"}, MiB),
    ],
    ids=["range-middle", "range-start", "byte_range"],
)
def test_a_range_reads_only_the_range(big_file_server, headers, params, expected):
    srv, url = big_file_server
    with requests.Session() as session:  # one keep-alive connection, as cartd and curl -r use
        before = workers_read_bytes(srv.proc.pid)
        for _ in range(3):
            resp = session.get(url, headers=headers, params=params, timeout=30)
            assert resp.status_code in (200, 206) and len(resp.content) == expected
            assert resp.content == b"\x5a" * expected
        touched = workers_read_bytes(srv.proc.pid) - before
    # three answers plus generous slack for the server's own small reads; the
    # whole file would be 3 x 64 MiB
    assert touched < 3 * expected + 4 * MiB
