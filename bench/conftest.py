"""The benchmark session: start the services once, print one table at the end.

Every figure is measured in this run beside its references: nginx on the same
files, pyai's pure-Python I/O path, and the raw storage speed (dd).  Large-file
figures swing a lot on a shared VM: only the same-run ratios mean anything.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# the process harness the tests use (tests/harness.py); appended, so nothing there shadows bench's own modules
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))

import benchlib as bl  # noqa: E402
from benchlib import RESULTS, SETTINGS  # noqa: E402

_STARTED = time.monotonic()
_ENV = None


class BenchEnv:
    """The file systems, the services on each and the files the scenarios read."""

    def __init__(self):
        self.base = {}  # fs -> base dir
        self.services = {}  # (fs, target) -> Service
        self.large = {}  # fs -> path of the large file every GET reads
        self.source = None
        self.can_drop = False
        self.original_note = "not started"

    def setup(self):
        self.base["disk"] = bl.pick_disk_dir()
        tmpfs = bl.pick_tmpfs_dir()
        if tmpfs:
            self.base["tmpfs"] = tmpfs
        self.can_drop = bl.drop_caches()
        # the upload source lives in memory so the client never waits on a disk
        src_dir = self.base.get("tmpfs", self.base["disk"])
        self.source = bl.make_source(Path(src_dir) / "source.bin", SETTINGS.large_size)
        for fs, base in self.base.items():
            prefix = Path(base) / "archive"
            prefix.mkdir()
            work = Path(base) / "work"
            self.services[(fs, "pyai")] = bl.PyaiService(f"pyai-c-{fs}", work, prefix, "c").start()
            self.services[(fs, "pyai-python")] = bl.PyaiService(f"pyai-py-{fs}", work, prefix, "python").start()
            # the cost of the checksum every PUT computes by default, measured beside it
            self.services[(fs, "pyai-nosum")] = bl.PyaiService(
                f"pyai-nosum-{fs}", work, prefix, "c", PAI_CHECKSUM="none"
            ).start()
            # nginx's upload temp files on the same file system as the target, like pyai's
            self.services[(fs, "nginx")] = bl.NginxService(
                f"nginx-{fs}", work, prefix, Path(base) / "nginx-body"
            ).start()
            # the large file all GETs read: stored by pyai, served by everyone from the same directory
            row = bl.curl_put(f"{self.services[(fs, 'pyai')].url}/large-get", self.source)
            if row["status"] != 201:
                raise RuntimeError(f"storing the large file on {fs} failed: {row}")
            self.large[fs] = prefix / "large-get"
        # small files the GET scenarios cycle through (disk)
        pyai = self.services[("disk", "pyai")]
        for name, size in (("s30", 30), ("s64k", 65536)):
            statuses = bl.put_files(pyai, [f"{name}-{i}" for i in range(SETTINGS.small_files)], b"y" * size)
            if set(statuses) != {201}:
                raise RuntimeError(f"storing small files failed: {sorted(set(statuses))}")
        self._start_original()

    def _start_original(self):
        """The original under uWSGI on the disk prefix: installed unless QUICK; never fails the run."""
        if os.environ.get("BENCH_ORIGINAL", "").strip().lower() in ("0", "no", "false", "off"):
            ok, note = False, "left out (BENCH_ORIGINAL=0)"
        else:
            ok, note = bl.original_available(install=not SETTINGS.quick)
        if ok:
            base = Path(self.base["disk"])
            svc = bl.OriginalService("original-disk", base / "work", base / "archive", SETTINGS.connections)
            try:
                self.services[("disk", "original")] = svc.start()
            except (RuntimeError, OSError) as exc:
                ok, note = False, f"uWSGI did not start: {str(exc).splitlines()[0][:200]}"
        self.original_note = note
        if not ok:
            RESULTS.note("original", f"orig column empty, pacifica-archiveinterface {bl.ORIGINAL_VERSION}: {note}.")

    def service(self, fs, target):
        if fs not in self.base:
            pytest.skip(f"no {fs} file system available")
        return self.services.get((fs, target))

    def prefix(self, fs):
        if fs not in self.base:
            pytest.skip(f"no {fs} file system available")
        return Path(self.base[fs]) / "archive"

    def info(self):
        return {
            "dirs": {fs: {"path": b, "fs_type": bl.fs_type(b)} for fs, b in self.base.items()},
            "page_cache_drop": self.can_drop,
            "servers": {
                f"{fs}/{t}": {"url": s.url, **({"env": s.settings} if hasattr(s, "settings") else {})}
                for (fs, t), s in self.services.items()
            },
            "original": self.original_note,
        }

    def teardown(self):
        for svc in self.services.values():
            svc.stop()
        if not SETTINGS.keep:
            for base in self.base.values():
                shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def bench_env():
    global _ENV
    env = BenchEnv()
    _ENV = env
    try:
        env.setup()
        yield env
    finally:
        env.teardown()


def pytest_report_header(config):
    s = SETTINGS
    return (
        f"pyai bench: {'QUICK' if s.quick else 'full'}; large file {s.large_size / bl.MiB:.0f} MiB x"
        f" {s.large_rounds}; small {s.small_seconds}s x {s.small_rounds}, {s.connections} connections;"
        f" gunicorn {s.workers} workers x {s.threads} threads"
    )


def _gunicorn_settings():
    try:
        from pyai.server import gunicorn_conf as g

        return {
            "worker_class": g.worker_class,
            "workers": SETTINGS.workers,
            "threads": SETTINGS.threads,
            "sendfile": getattr(g, "sendfile", "gunicorn's default: on"),
            "keepalive": g.keepalive,
            "config": "gunicorn.conf.py (pyai/server/gunicorn_conf.py) with PAI_WORKERS/PAI_THREADS",
        }
    except Exception as exc:  # noqa: BLE001 - the table matters more than this detail
        return {"error": repr(exc)}


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS.samples:
        return
    wall = time.monotonic() - _STARTED
    tr = terminalreporter
    table = bl.render_table(RESULTS)
    tr.write_sep("=", "pyai benchmark (medians; ratio = pyai / reference)")
    tr.write_line(table)
    notes = [
        f"mode: {'QUICK (smoke test)' if SETTINGS.quick else 'full'};"
        f" large file {SETTINGS.large_size / bl.MiB:.0f} MiB,"
        f" {SETTINGS.large_rounds} round(s); small: {SETTINGS.connections} keep-alive connections,"
        f" {SETTINGS.small_seconds} s x {SETTINGS.small_rounds} round(s); wall {wall:.0f} s",
        "pyai = PYAI_IMPL=c, pyai-py = PYAI_IMPL=python, both gunicorn"
        f" {SETTINGS.workers}x{SETTINGS.threads} threads (pyai.server.worker.PyaiWorker);"
        " nginx = private nginx on the same directory"
        " (sendfile GET, DAV PUT, no fsync); raw = dd write conv=fdatasync / dd read for large files,"
        " the file system alone storing small files durably like pyai (8 threads) for small PUTs.",
        "pyai PUT fsyncs the file and the directory before 201 (nginx does not):"
        " small PUT on disk is an fsync benchmark.",
        "configuration: every pyai row runs pyai's defaults (checksums sha256, adler32 and md5, the md5"
        " on a thread beside the others; durable PUT, PAI_DURABILITY unset),"
        " so do small PUT 30B/64KiB (disk), 30B tmpfs and 30B ext4j; only the `no checksum` rows set"
        " PAI_CHECKSUM=none. Large PUTs send a Content-Length; `large PUT chunked` sends the same file as"
        " `curl -T -H 'Transfer-Encoding: chunked'` (no length) to pyai and to nginx (DAV).",
        f"orig = pacifica-archiveinterface {bl.ORIGINAL_VERSION} (PyPI, CherryPy app, posix backend, prefix = the"
        f" same disk directory) under uWSGI: {SETTINGS.connections} processes x 1 thread (its backend keeps a"
        " request's open file in an object all threads of a process share), --http-socket in the workers;"
        " uWSGI 2.0's http-socket keeps no connection alive, so every request is a new connection; the original"
        " writes with no fsync; its GET bodies end at the connection's close, which wrk counts as a read error"
        " per answer (not counted in its errors). Measured on small PUT 30B, small GET and HEAD only.",
        "ext4j = an ext4 image with a journal (ordered data), loop-mounted under /var/tmp for the run (the root"
        " ext4 of this VM has no journal); pyai (defaults), nginx and raw as on disk.",
        "CPU = server CPU (master + workers, utime+stime) per GiB moved or per request; RSS = worker peak VmHWM.",
        "small PUT/GET and mixed via wrk (non-2xx and socket errors counted), HEAD via hey;"
        " errors p/n/py/o = pyai/nginx/pyai-py/orig.",
        "cache: 'dropped' = page cache dropped before each GET round (read from the device); 'cached' = page cache;"
        " 'memory' = tmpfs.",
        "Large-file figures swing a lot on a VM: compare the ratios of one run, not absolute numbers across runs.",
    ]
    if any(scenario.startswith("hpss ") for scenario in RESULTS.samples):
        notes.append(
            "hpss rows: the pyai column is pyai -t hpss on the HPSS emulator, the nginx column is NOT nginx but the"
            " reference pyai -t posix with use_id2filename (both PYAI_IMPL=c, integer ids, own prefixes on the same"
            " disk); ratio = hpss / posix (aim: >= 0.80), errors p/n = hpss/posix, CPU = hpss (posix)."
            " The emulator never fsyncs: hpss PUT answers before the data is on disk, posix PUT after (fsync)."
        )
    notes += list(RESULTS.notes.values())
    for n in notes:
        tr.write_line("  " + n)
    bl.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if SETTINGS.quick else "full",
        "wall_seconds": round(wall, 1),
        "settings": SETTINGS.as_dict(),
        "machine": bl.machine_info(),
        "gunicorn": _gunicorn_settings(),
        "environment": _ENV.info() if _ENV else None,
        "table": table.splitlines(),
        "notes": notes,
        "scenarios": RESULTS.to_json(),
    }
    try:
        doc["git"] = subprocess.run(
            ["git", "-C", str(bl.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    # a full run's JSON is kept (git tracks it; the performance page is made from it), a quick one's is not
    path = bl.RESULTS_DIR / f"{'quick' if SETTINGS.quick else 'bench'}-{stamp}.json"
    text = json.dumps(doc, indent=2, default=str)
    path.write_text(text)
    (bl.RESULTS_DIR / "latest.json").write_text(text)
    tr.write_line(f"  results: {os.path.relpath(path, os.getcwd())} (and bench/results/latest.json)")
