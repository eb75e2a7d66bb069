"""Large files: PUT and GET on disk and on tmpfs, and a 1 MiB Range GET from the middle.

PUTs with a Content-Length, and (``large PUT chunked``) the same file sent by curl as a
chunked body.  One curl per transfer (the client must not be the bottleneck); throughput is the
bytes moved over curl's total time.  References in the same run: nginx on the
same directory, pyai's Python path, and dd (write with conv=fdatasync, read); and the
``digest limit``: one core computing the slowest of the default digests over the same source.
"""

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

FILESYSTEMS = ["disk", "tmpfs"]
TARGETS = ["pyai", "nginx", "pyai-python", "raw"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_large_put(benchmark, bench_env, fs, target):
    _large_puts(benchmark, bench_env, f"large PUT {fs}", fs, target, bench_env.service(fs, target))


@pytest.mark.parametrize("target", ["pyai", "nginx"])
@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_large_put_no_checksum(benchmark, bench_env, fs, target):
    """pyai with ``checksum = none`` beside nginx: what the default sha256 costs."""
    svc = bench_env.service(fs, "pyai-nosum" if target == "pyai" else target)
    _large_puts(benchmark, bench_env, f"large PUT {fs}, no checksum", fs, target, svc)


@pytest.mark.parametrize("target", ["pyai", "nginx"])
@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_large_put_chunked(benchmark, bench_env, fs, target):
    """The same PUT with ``Transfer-Encoding: chunked`` (no Content-Length), pyai's defaults beside nginx."""
    _large_puts(benchmark, bench_env, f"large PUT chunked {fs}", fs, target, bench_env.service(fs, target), True)


def test_digest_limit(benchmark, bench_env):
    """One core computing the slowest default digest over the same source: the large PUTs
    above keep those digests, and each is sequential, so none can go faster (after them: their
    ratios to it are noted)."""
    bl.digest_limit_rounds(benchmark, "digest limit", bench_env.source)


def _large_puts(benchmark, bench_env, scenario, fs, target, svc, chunked=False):
    bl.large_put_rounds(benchmark, scenario, target, svc, bench_env.prefix(fs), bench_env.source, chunked)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_large_get(benchmark, bench_env, fs, target):
    scenario = f"large GET {fs}"
    svc = bench_env.service(fs, target)
    path = bench_env.large[fs]
    state = {}

    def setup():
        if fs == "disk":
            state["cache"] = "dropped" if bl.drop_caches() else "cached"
        else:
            state["cache"] = "memory"

    def run():
        if svc is None:
            nbytes, seconds = bl.dd([f"if={path}", "of=/dev/null", "bs=4M"])
            RESULTS.add(scenario, target, nbytes / seconds / 1e6, "MB/s", moved=nbytes, cache=state["cache"])
            return
        bl.record_get(scenario, target, svc, f"{svc.url}/large-get", cache=state["cache"])

    benchmark.pedantic(run, setup=setup, rounds=SETTINGS.large_rounds, iterations=1)
    bl.finish(benchmark, scenario, target)


@pytest.mark.parametrize("target", ["pyai", "nginx", "pyai-python"])
def test_range_get(benchmark, bench_env, target):
    """N GETs of the 1 MiB in the middle of the large file, over one keep-alive connection."""
    scenario = "range GET 1MiB"
    svc = bench_env.service("disk", target)
    start = (SETTINGS.large_size - bl.MiB) // 2
    byte_range = f"{start}-{start + bl.MiB - 1}"
    n = SETTINGS.range_requests

    def run():
        with bl.measure(svc) as m:
            rows = bl.curl_get_many(f"{svc.url}/large-get", n, byte_range)
        good = [r for r in rows if r["status"] == 206 and r["down"] == bl.MiB]
        seconds = sum(r["seconds"] for r in rows)
        moved = sum(r["down"] for r in rows)
        RESULTS.add(
            scenario, target, moved / seconds / 1e6 if seconds else 0.0, "MB/s",
            errors=n - len(good), moved=moved, requests=len(rows), cache="cached", **m,
            requests_per_s=len(rows) / seconds if seconds else 0.0,
        )  # fmt: skip

    benchmark.pedantic(run, rounds=SETTINGS.large_rounds, iterations=1)
    bl.finish(benchmark, scenario, target)
