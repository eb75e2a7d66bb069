"""Two pyai instances (two gunicorn masters, as on two nodes) serving one prefix."""

import os
import threading

import pytest
import requests
from server import wait_until

from .checks import assert_intact, sha256, store
from .procs import connect
from .streams import BLOCK, put_head

RACERS = 12  # uploads of one id, spread over both instances


@pytest.fixture
def pair(start):
    first = start("node-a")
    return first, start("node-b", PAI_PREFIX=str(first.prefix))


def test_one_winner_across_instances(pair, new_id):
    ident = new_id()
    bodies = [os.urandom(200_000 + i) for i in range(RACERS)]
    answers = [None] * RACERS
    ready = threading.Barrier(RACERS)

    def race(i):
        srv = pair[i % 2]
        ready.wait(60)
        answers[i] = requests.put(srv.id_url(ident), data=bodies[i], timeout=60)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    statuses = sorted(resp.status_code for resp in answers)
    assert statuses == [201] + [409] * (RACERS - 1), statuses
    winner = bodies[[resp.status_code for resp in answers].index(201)]
    for srv in pair:
        assert_intact(srv, {ident: winner})
        assert srv.temp_files() == []


def test_each_sees_the_others_files_at_once(pair, new_id):
    a, b = pair
    for writer, reader in ((a, b), (b, a)):
        ident, data = new_id(), os.urandom(3 << 20)
        store(writer, ident, data)
        assert_intact(reader, {ident: data})
        assert requests.head(reader.id_url(ident), timeout=30).status_code == 204
        assert requests.put(reader.id_url(ident), data=b"late", timeout=30).status_code == 409
        assert requests.delete(reader.id_url(ident), timeout=30).status_code == 200
        assert requests.get(writer.id_url(ident), timeout=30).status_code == 404


@pytest.mark.posix_only("hpss has no lock a live upload holds; its sweep goes by age")
def test_starting_instance_spares_live_uploads(start, new_id):
    """The start-up sweep of a second instance removes stale temporary files, never
    those of an upload the first one is receiving (they are locked)."""
    a = start("node-a")
    stale = a.prefix / ".pyai-tmp-crashed-long-ago"
    stale.write_bytes(b"left by a crash")
    ident, data = new_id(), os.urandom(8 << 20)
    sock = connect(a.port)
    try:
        sock.sendall(put_head(ident, len(data)) + data[: 2 << 20])
        # not any two: the upload's file was once taken under its short-lived new- name (CI)
        assert wait_until(lambda: len(a.settled_temp_files()) == 2, timeout=60), a.temp_files()
        live = [p for p in a.settled_temp_files() if p != stale]
        # no age rule: only the lock keeps the live upload's file from this sweep
        b = start("node-b", PAI_PREFIX=str(a.prefix), PAI_SWEEP_MIN_AGE="0")
        assert not stale.exists(), "the second instance did not sweep at start"
        assert all(p.exists() for p in live), "the second instance swept a live upload"
        for start_at in range(2 << 20, len(data), BLOCK):
            sock.sendall(data[start_at : start_at + BLOCK])
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    finally:
        sock.close()
    for srv in (a, b):
        resp = requests.get(srv.id_url(ident), timeout=60)
        assert resp.status_code == 200 and sha256(resp.content) == sha256(data)
