"""Many small files: PUT of new ids, GET and HEAD with 8 concurrent keep-alive connections.

PUT and GET run under wrk for a bounded time (bench/lua/put.lua gives every request
a new id: token-thread-counter); HEAD runs under hey (Debian's wrk 4.1 hangs on
HEAD answers that carry a Content-Length).  Errors = socket errors + HTTP >= 400
(wrk), transport errors + non-2xx (hey).  The raw reference for PUT is the file
system alone storing small files durably the way pyai does (``durable_creates``),
from as many threads as wrk has connections.
"""

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

TARGETS = ["pyai", "nginx", "pyai-python", "raw"]
CASES = [
    # scenario, method, size, fs
    ("small PUT 30B", "PUT", 30, "disk"),
    ("small PUT 64KiB", "PUT", 65536, "disk"),
    ("small PUT 30B tmpfs", "PUT", 30, "tmpfs"),
    ("small GET 30B", "GET", 30, "disk"),
    ("small GET 64KiB", "GET", 65536, "disk"),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", CASES, ids=[c[0].replace(" ", "-") for c in CASES])
def test_small(benchmark, bench_env, case, target):
    scenario, method, size, fs = case
    if target == "raw":
        if method != "PUT":
            pytest.skip("the raw reference is for PUT (GETs are compared with nginx's sendfile)")
        directory = bench_env.prefix(fs).parent / "raw-creates"

        def run_raw():
            rate = bl.durable_creates(directory, size, SETTINGS.small_seconds, SETTINGS.connections)
            RESULTS.add(scenario, target, rate, "req/s")

        benchmark.pedantic(run_raw, rounds=SETTINGS.small_rounds, iterations=1)
        return
    svc = bench_env.service(fs, target)

    def run():
        with bl.measure(svc) as m:
            if method == "PUT":
                rep = bl.wrk(svc.url, "put.lua", [bl.new_token("sput"), size], SETTINGS.small_seconds)
            else:
                name = "s30" if size == 30 else "s64k"
                rep = bl.wrk(svc.url, "get.lua", [name, SETTINGS.small_files], SETTINGS.small_seconds)
        RESULTS.add(
            scenario, target, rep["rps"], "req/s", errors=rep["errors"], requests=rep["requests"],
            moved=rep["requests"] * size, cache="cached" if method == "GET" else None, **m, wrk=rep,
        )  # fmt: skip

    benchmark.pedantic(run, rounds=SETTINGS.small_rounds, iterations=1)
    benchmark.extra_info.update(RESULTS.summary(scenario, target) or {})


@pytest.mark.parametrize("target", TARGETS[:3])
def test_head(benchmark, bench_env, target):
    scenario = "HEAD"
    svc = bench_env.service("disk", target)

    def run():
        with bl.measure(svc) as m:
            rep = bl.hey(f"{svc.url}/s64k-1", "HEAD", SETTINGS.small_seconds)
        RESULTS.add(scenario, target, rep["rps"], "req/s", errors=rep["errors"], requests=rep["requests"], **m, hey=rep)

    benchmark.pedantic(run, rounds=SETTINGS.small_rounds, iterations=1)
    benchmark.extra_info.update(RESULTS.summary(scenario, target) or {})
