"""Many small files: PUT of new ids, GET and HEAD with 8 concurrent keep-alive connections.

PUT and GET run under wrk for a bounded time (bench/lua/put.lua gives every request
a new id: token-thread-counter); HEAD runs under hey (Debian's wrk 4.1 hangs on
HEAD answers that carry a Content-Length).  Errors = socket errors + HTTP >= 400
(wrk), transport errors + non-2xx (hey).  The raw reference for PUT is the file
system alone storing small files durably the way pyai does (``durable_creates``),
from as many threads as wrk has connections.  The original (pacifica-archiveinterface
0.4.2 under uWSGI, ``original``) is measured on the small PUT 30B, GET and HEAD rows.
"""

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

TARGETS = ["pyai", "nginx", "pyai-python", "raw", "original"]
CASES = [
    # scenario, method, size, fs
    ("small PUT 30B", "PUT", 30, "disk"),
    ("small PUT 64KiB", "PUT", 65536, "disk"),
    ("small PUT 30B tmpfs", "PUT", 30, "tmpfs"),
    ("small GET 30B", "GET", 30, "disk"),
    ("small GET 64KiB", "GET", 65536, "disk"),
]
# the rows the original is measured on (the ones its issue compared; HEAD below)
ORIGINAL_CASES = {"small PUT 30B", "small GET 30B", "small GET 64KiB"}


def _original(bench_env, scenario):
    if scenario not in ORIGINAL_CASES and scenario != "HEAD":
        pytest.skip("the original is measured on small PUT 30B, small GET and HEAD on disk only")
    svc = bench_env.service("disk", "original")
    if svc is None:
        pytest.skip(f"original: {bench_env.original_note}")
    return svc


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", CASES, ids=[c[0].replace(" ", "-") for c in CASES])
def test_small(benchmark, bench_env, case, target):
    scenario, method, size, fs = case
    if target == "raw":
        if method != "PUT":
            pytest.skip("the raw reference is for PUT (GETs are compared with nginx's sendfile)")
        bl.raw_creates_rounds(benchmark, scenario, target, bench_env.prefix(fs).parent / "raw-creates", size)
        return
    if target == "original":
        svc = _original(bench_env, scenario)
    else:
        svc = bench_env.service(fs, target)
    bl.small_rounds(benchmark, scenario, target, svc, method, size, close_ends_body=target == "original")


@pytest.mark.parametrize("target", ["pyai", "nginx", "pyai-python", "original"])
def test_head(benchmark, bench_env, target):
    scenario = "HEAD"
    svc = _original(bench_env, scenario) if target == "original" else bench_env.service("disk", target)

    def run():
        with bl.measure(svc) as m:
            rep = bl.hey(f"{svc.url}/s64k-1", "HEAD", SETTINGS.small_seconds)
        RESULTS.add(scenario, target, rep["rps"], "req/s", errors=rep["errors"], requests=rep["requests"], **m, hey=rep)

    benchmark.pedantic(run, rounds=SETTINGS.small_rounds, iterations=1)
    benchmark.extra_info.update(RESULTS.summary(scenario, target) or {})
