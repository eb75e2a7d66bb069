"""A third-party pull of the large file against a curl GET of it from the same source.

Two pyai servers (PYAI_IMPL=c, gunicorn like the others) on the disk file system of
the run: the source holds the large file; the other, with ``[tpc] remotes =
127.0.0.1``, is sent ``COPY`` with ``Source:`` naming it, and pulls it: HEAD, GET,
and the body stored as a PUT stores one (atomic, durable, the default digests
computed on the way).  The throughput is the file's bytes over the time from the
COPY's request to its last line (``success: Created``); the reference (the
``nginx`` column) is curl GETting the same URL to /dev/null, in the same run: the
source's speed, with nothing stored.  The CPU figure is the pulling server's.
"""

import http.client
import itertools
import os
import shutil
import time
from pathlib import Path

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

SCENARIO = "TPC pull disk"
TARGETS = ["pull", "curl GET"]
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def ends(bench_env):
    """(source, puller): the source holding the large file under ``large``."""
    if "disk" not in bench_env.base:
        pytest.skip("no disk file system available")
    base = Path(bench_env.base["disk"]) / "tpc"
    work = base / "work"
    services = []
    try:
        for name, settings in (("source", {}), ("puller", {"PAI_TPC_REMOTES": "127.0.0.1"})):
            prefix = base / f"archive-{name}"
            prefix.mkdir(parents=True)
            svc = bl.PyaiService(f"pyai-tpc-{name}-disk", work, prefix, "c", **settings)
            services.append(svc)
            bench_env.services[("disk", f"tpc-{name}")] = svc
            svc.start()
        source, puller = services
        row = bl.curl_put(f"{source.url}/large", bench_env.source)
        if row["status"] != 201:
            raise RuntimeError(f"storing the large file failed: {row}\n{source.log()}")
        yield source, puller
    finally:
        for svc in services:
            svc.stop()
        if not SETTINGS.keep:
            shutil.rmtree(base, ignore_errors=True)


def pull(puller, source_url, ident):
    """One COPY pull: (seconds from the request to the last line, that line)."""
    conn = http.client.HTTPConnection("127.0.0.1", puller.port, timeout=900)
    started = time.perf_counter()
    try:
        conn.request("COPY", f"/{ident}", headers={"Source": source_url})
        resp = conn.getresponse()
        lines = resp.read().decode().strip().split("\n")
    finally:
        conn.close()
    return time.perf_counter() - started, (lines[-1] if resp.status == 202 else f"{resp.status}")


@pytest.mark.parametrize("target", TARGETS)
def test_tpc_pull(benchmark, bench_env, ends, target):
    RESULTS.set_columns(SCENARIO, pyai="pull", nginx="curl GET")
    source, puller = ends
    url = f"{source.url}/large"
    stored = []

    def setup():
        for path in stored:  # one large file at a time on the disk
            bl.unlink_quiet(path)
        stored.clear()
        os.sync()
        bl.drop_caches()  # the source reads from the disk, for both
        return (), {}

    def run():
        if target == "curl GET":
            bl.record_get(SCENARIO, target, source, url)
            return
        ident = f"pulled-{next(_ids)}"
        stored.append(puller.prefix / ident)
        with bl.measure(puller) as m:
            seconds, last = pull(puller, url, ident)
        ok = last == "success: Created" and (puller.prefix / ident).stat().st_size == SETTINGS.large_size
        RESULTS.add(
            SCENARIO, target, SETTINGS.large_size / seconds / 1e6, "MB/s",
            errors=0 if ok else 1, moved=SETTINGS.large_size, **m, last_line=last,
        )  # fmt: skip

    benchmark.pedantic(run, setup=setup, rounds=SETTINGS.large_rounds, iterations=1)
    for path in stored:
        bl.unlink_quiet(path)
    bl.finish(benchmark, SCENARIO, target)
