"""Many requests at once never mix bytes; racing PUTs of one id have one winner."""

import hashlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

THREADS = 8
FILES_PER_THREAD = 200


@pytest.mark.slow
@pytest.mark.posix_only("uses ids that are names")
def test_many_files_many_threads(server):
    tag = secrets.token_hex(4)

    def worker(n):
        session = requests.Session()
        try:
            stored = {}
            for i in range(FILES_PER_THREAD):
                ident = f"conc-{tag}-{n}-{i}"
                data = os.urandom(64 + (i * 131 + n * 17) % 4096) + ident.encode()
                resp = session.put(server.id_url(ident), data=data, timeout=30)
                assert resp.status_code == 201, (ident, resp.status_code, resp.text)
                assert resp.json()["total_bytes"] == len(data)
                stored[ident] = hashlib.sha256(data).hexdigest()
            for ident, digest in stored.items():
                resp = session.get(server.id_url(ident), timeout=30)
                assert resp.status_code == 200, (ident, resp.status_code)
                assert hashlib.sha256(resp.content).hexdigest() == digest, ident
            return stored
        finally:
            session.close()

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    all_ids = {k: v for r in results for k, v in r.items()}
    assert len(all_ids) == THREADS * FILES_PER_THREAD
    for ident, digest in all_ids.items():
        assert hashlib.sha256(server.stored_path(ident).read_bytes()).hexdigest() == digest
    assert server.temp_files() == []


@pytest.mark.slow
def test_concurrent_puts_same_id(server, uid):
    n = 16
    bodies = [os.urandom(200_000) + bytes([i]) for i in range(n)]
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        barrier.wait()
        resp = requests.put(server.id_url(uid), data=bodies[i], timeout=60)
        results[i] = (resp.status_code, resp.json())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [r[0] for r in results]
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == n - 1, statuses
    winner = statuses.index(201)
    assert results[winner][1]["total_bytes"] == len(bodies[winner])
    for status, body in results:
        if status == 409:
            assert "total_bytes" not in body
    assert server.stored_path(uid).read_bytes() == bodies[winner]
    assert requests.get(server.id_url(uid), timeout=30).content == bodies[winner]
    assert server.temp_files() == []


@pytest.mark.slow
def test_concurrent_reads_and_ranges(server, uid):
    data = os.urandom(2 * 1024 * 1024)
    assert requests.put(server.id_url(uid), data=data, timeout=30).status_code == 201

    def reader(i):
        start = (i * 65537) % len(data)
        stop = min(start + 100_000, len(data))
        with requests.Session() as s:
            whole = s.get(server.id_url(uid), timeout=30)
            part = s.get(server.id_url(uid), headers={"Range": f"bytes={start}-{stop - 1}"}, timeout=30)
        return whole.content == data and part.status_code == 206 and part.content == data[start:stop]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(reader, range(32)))
