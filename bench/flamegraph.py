"""`make profile SCENARIO=...`: a py-spy flame graph of one pyai worker under one load.

Starts pyai as the benchmarks do (bench/benchlib.py's PyaiService: gunicorn,
the posix backend, the C I/O path unless --impl python) with one worker, on a
tmpfs prefix (the storage is not what is looked at), drives the scenario's load
and records that worker with ``py-spy record`` meanwhile.  The SVG is written to
bench/results/profile-<scenario>.svg (open it in a browser: frames are
clickable).  The scenarios:

- small-get, small-head: GET (wrk, bench/lua/get.lua) or HEAD (hey: wrk waits
  for a HEAD answer's body) of 4 KiB files;
- small-put: PUTs of 4 KiB under new ids (wrk, bench/lua/put.lua);
- large-get, large-put: the same with a 64 MiB file (--large-size), 2
  connections; the files large-put stores are removed as they arrive, so the
  tmpfs does not fill.

Not a benchmark: py-spy samples the worker (100 times a second by default),
which slows it.  Read the shape, not the rates.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
os.environ.setdefault("BENCH_WORKERS", "1")  # read by benchlib's SETTINGS: all the load reaches the one recorded
sys.path.insert(0, str(BENCH))
sys.path.append(str(BENCH.parent / "tests"))  # tests/harness.py, as bench/conftest.py does

import benchlib as bl  # noqa: E402

SMALL = 4096
SMALL_FILES = 200
SCENARIOS = ("small-get", "small-head", "small-put", "large-get", "large-put")


def need(tool):
    found = bl.which(tool) or shutil.which(tool, path=os.path.dirname(sys.executable))
    if not found:
        how = "make profile installs it" if tool == "py-spy" else f"apt-get install {tool}"
        sys.exit(f"profile: {tool} is not installed ({how})")
    return found


def seed(service, names, size):
    statuses = bl.put_files(service, names, b"y" * size)
    if set(statuses) != {201}:
        sys.exit(f"profile: storing the files to read failed: {sorted(set(statuses))}")


def load(scenario, service, seconds, large_size):
    """A function running the scenario's load for ``seconds`` (the files it reads stored first)."""
    if scenario in ("small-get", "small-head"):
        seed(service, [f"s-{i}" for i in range(SMALL_FILES)], SMALL)
        if scenario == "small-get":
            return lambda: bl.wrk(service.url, "get.lua", ["s", SMALL_FILES], seconds)
        need("hey")
        return lambda: bl.hey(f"{service.url}/s-0", "HEAD", seconds)
    if scenario == "small-put":
        return lambda: bl.wrk(service.url, "put.lua", [bl.new_token("p"), SMALL], seconds)
    if scenario == "large-get":
        seed(service, ["large-0"], large_size)
        return lambda: bl.wrk(service.url, "get.lua", ["large", 1], seconds, connections=2)
    token = bl.new_token("L")
    return lambda: with_cleaner(
        service.prefix, token, lambda: bl.wrk(service.url, "put.lua", [token, large_size], seconds, connections=2)
    )


def with_cleaner(prefix, token, run):
    """``run()`` while the files stored under ids starting with ``token`` are removed as they arrive."""
    stop = threading.Event()

    def clean():
        while not stop.wait(0.2):
            for entry in os.scandir(prefix):
                if entry.name.startswith(token):  # stored (a temporary file's name starts with '.')
                    bl.unlink_quiet(entry.path)

    cleaner = threading.Thread(target=clean, daemon=True)
    cleaner.start()
    try:
        return run()
    finally:
        stop.set()
        cleaner.join()


def record(py_spy, pid, seconds, out, rate, native):
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
    command += ["--format", "flamegraph", "--output", str(out)]
    # --nonblocking reads the worker without pausing it (less skew); native unwinding needs it paused
    command.append("--native" if native else "--nonblocking")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--seconds", type=int, default=10, help="how long py-spy records (default 10)")
    parser.add_argument("--impl", choices=("c", "python"), default="c", help="pyai's I/O path (PYAI_IMPL)")
    parser.add_argument("--native", action="store_true", help="py-spy --native: the C frames too")
    parser.add_argument("--rate", type=int, default=100, help="samples a second (default 100)")
    parser.add_argument("--large-size", default="64M", help="the large scenarios' file size (default 64M)")
    parser.add_argument("--output", type=Path, help="default bench/results/profile-<scenario>.svg")
    args = parser.parse_args(argv)
    py_spy = need("py-spy")
    need("wrk")
    out = args.output or bl.RESULTS_DIR / f"profile-{args.scenario}.svg"
    out.parent.mkdir(parents=True, exist_ok=True)
    base = bl.pick_tmpfs_dir() or tempfile.mkdtemp(prefix="pyai-profile-")
    prefix = Path(base) / "archive"
    prefix.mkdir()
    service = bl.PyaiService(f"profile-{args.scenario}", Path(base) / "work", prefix, args.impl)
    try:
        service.start()
        (worker,) = service.worker_pids()
        run = load(args.scenario, service, args.seconds + 2, bl.parse_size(args.large_size))
        result = {}
        driver = threading.Thread(target=lambda: result.update(report=run()))
        driver.start()
        time.sleep(1)  # the load is on when the recording starts
        spy = record(py_spy, worker, args.seconds, out, args.rate, args.native)
        spy_output, _ = spy.communicate(timeout=args.seconds + 120)
        driver.join()
    finally:
        service.stop()
        shutil.rmtree(base, ignore_errors=True)
    if spy.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        sys.exit(f"profile: py-spy failed (rc {spy.returncode}):\n{spy_output}")
    report = result.get("report") or {}
    print(
        f"{args.scenario}: {report.get('requests', 0)} requests ({report.get('rps', 0):.0f}/s, slowed by the sampling;"
        f" {report.get('errors', 0)} errors), worker {worker} recorded {args.seconds} s -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
