"""Mixed load: 8 clients of small GETs alone, then while one large GET and one large PUT run.

During the second half a large GET and a large PUT (of BENCH_LARGE_SIZE, new id
each time) are kept running back to back for the whole wrk window, so the small
requests always share the server with two large transfers.
"""

import time

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

TARGETS = ["pyai", "nginx", "pyai-python"]


@pytest.mark.parametrize("target", TARGETS)
def test_mixed(benchmark, bench_env, target):
    svc = bench_env.service("disk", target)
    prefix = bench_env.prefix("disk")

    def small():
        return bl.wrk(svc.url, "get.lua", ["s30", SETTINGS.small_files], SETTINGS.small_seconds)

    def run():
        alone = small()
        RESULTS.add("mixed small alone", target, alone["rps"], "req/s", errors=alone["errors"],
                    requests=alone["requests"], cache="cached", wrk=alone)  # fmt: skip
        load = bl.LargeLoad(svc, f"{svc.url}/large-get", bench_env.source, prefix)
        load.start()
        time.sleep(0.3)
        try:
            during = small()
        finally:
            load.stop()
        large = load.summary()
        failed = sum(v["failed"] for v in large.values())
        RESULTS.add("mixed small during large", target, during["rps"], "req/s", errors=during["errors"] + failed,
                    requests=during["requests"], cache="cached", wrk=during, large=large)  # fmt: skip

    benchmark.pedantic(run, rounds=SETTINGS.mixed_rounds, iterations=1)
    benchmark.extra_info.update(
        {
            "alone": RESULTS.summary("mixed small alone", target),
            "during": RESULTS.summary("mixed small during large", target),
        }
    )
