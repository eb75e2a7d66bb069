"""The write-back behind a write or a receive as strace sees it: the tests run a script that writes
40 MiB + 5 bytes with 8 MiB steps, and compare its sync_file_range calls with ``WRITTEN_BEHIND``."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
SIZE, STEP = 40 * MiB + 5, 8 * MiB


def _written_behind():
    """Each step is started once written, and the one before it waited for."""
    write = "SYNC_FILE_RANGE_WRITE"
    wait = "SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER"
    calls = [(0, STEP, write)]
    for k in range(1, 5):  # steps 1..4 complete at 16, 24, 32, 40 MiB
        calls += [(k * STEP, STEP, write), ((k - 1) * STEP, STEP, wait)]
    return calls


WRITTEN_BEHIND = _written_behind()


def sync_file_range_calls(fio, tmp_path, script, *args):
    """[(offset, nbytes, flags)] of the sync_file_range calls ``script`` made, in order; it is run as
    ``script <fio module> <file to write> *args`` and must have written SIZE bytes."""
    if shutil.which("strace") is None:
        pytest.fail("strace is missing (make test installs it as root)")
    target = tmp_path / "written"
    trace = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=sync_file_range", "-e", "signal=none", "-o", str(tmp_path / "trace"),
         sys.executable, "-c", script, fio.__name__, str(target), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert trace.returncode == 0, trace.stderr
    assert target.stat().st_size == SIZE
    calls = []
    for line in (tmp_path / "trace").read_text().splitlines():
        m = re.search(r"sync_file_range\(\d+, (\d+), (\d+), ([A-Z_|]+)\) = 0", line)
        assert m, line  # every call succeeded
        calls.append((int(m[1]), int(m[2]), m[3]))
    return calls
