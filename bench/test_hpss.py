"""Large files through ``-t hpss`` against ``-t posix``: PUT and GET on disk.

Two extra pyai servers (PYAI_IMPL=c, gunicorn like the others) on the disk file
system of the run, each with its own prefix: one with the hpss backend over the
HPSS emulator (pyai/libhpss_emu.so), one with the posix backend and
``use_id2filename`` so both take integer ids and store a file at
``<prefix><id2filename(id)>``.  Same file size, rounds and curl measurement as
test_large.py.  In the table the hpss figure is in the ``pyai`` column and the
posix one in the reference (``nginx``) column; the ratio is hpss / posix (the
aim is at least 0.8; not asserted here).
"""

import http.client
import importlib.util
import itertools
import os
import shutil
from pathlib import Path

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

if importlib.util.find_spec("pyai.hpss_client._hpss") is None:
    pytest.skip("pyai.hpss_client._hpss is not built (make compile)", allow_module_level=True)

from pyai.archive.ids import id2filename  # noqa: E402

TARGETS = ["posix", "hpss"]
GET_ID = 4096  # -> <prefix>/00/10/1000: the large file every GET reads
_put_ids = itertools.count(0x100000)  # fresh ids for the PUTs (the archive is write-once)


def _delete(svc, ident):
    """DELETE an id through the server (so the emulator's bookkeeping goes too); the status."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=120)
    try:
        conn.request("DELETE", f"/{ident}")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pair(bench_env):
    """{"posix": service, "hpss": service}, each holding the large file under GET_ID."""
    if "disk" not in bench_env.base:
        pytest.skip("no disk file system available")
    base = Path(bench_env.base["disk"]) / "hpss-vs-posix"
    work = base / "work"
    services = {}
    try:
        for target in TARGETS:
            prefix = base / f"archive-{target}"
            prefix.mkdir(parents=True)
            svc = bl.PyaiService(f"pyai-{target}-id-disk", work, prefix, "c")
            svc.settings["PAI_BACKEND_TYPE"] = target
            svc.settings["PAI_USE_ID2FILENAME"] = "true"
            services[target] = svc
            # listed with the run's servers (JSON environment); stopped at session end at the latest
            bench_env.services[("disk", f"{target}-id")] = svc
            svc.start()
            row = bl.curl_put(f"{svc.url}/{GET_ID}", bench_env.source)
            stored = Path(str(prefix) + id2filename(GET_ID))
            if row["status"] != 201 or not stored.is_file() or stored.stat().st_size != SETTINGS.large_size:
                raise RuntimeError(f"storing the large file through {target} failed: {row}\n{svc.log()}")
        yield services
    finally:
        for svc in services.values():
            svc.stop()
        if not SETTINGS.keep:
            shutil.rmtree(base, ignore_errors=True)  # free the disk for the tests after these


@pytest.mark.parametrize("target", TARGETS)
def test_hpss_large_put(benchmark, bench_env, pair, target):
    scenario = "hpss large PUT disk"
    RESULTS.set_columns(scenario, pyai="hpss", nginx="posix")
    svc = pair[target]
    stored = []

    def setup():
        for ident in stored:  # keep the file system as it was: one large file at a time
            _delete(svc, ident)
        stored.clear()
        os.sync()  # no earlier dirty pages written back during this round
        ident = next(_put_ids)
        stored.append(ident)
        return (ident,), {}

    def run(ident):
        stored_at = Path(str(svc.prefix) + id2filename(ident))
        bl.record_put(scenario, target, svc, f"{svc.url}/{ident}", bench_env.source, stored=stored_at, id=ident)

    benchmark.pedantic(run, setup=setup, rounds=SETTINGS.large_rounds, iterations=1)
    for ident in stored:
        _delete(svc, ident)
    bl.finish(benchmark, scenario, target)


@pytest.mark.parametrize("target", TARGETS)
def test_hpss_large_get(benchmark, bench_env, pair, target):
    scenario = "hpss large GET disk"
    RESULTS.set_columns(scenario, pyai="hpss", nginx="posix")
    svc = pair[target]
    state = {}

    def setup():
        state["cache"] = "dropped" if bl.drop_caches() else "cached"

    def run():
        bl.record_get(scenario, target, svc, f"{svc.url}/{GET_ID}", cache=state["cache"])

    benchmark.pedantic(run, setup=setup, rounds=SETTINGS.large_rounds, iterations=1)
    bl.finish(benchmark, scenario, target)
