"""Every test runs under a time limit: one that hangs fails with the stacks of its threads
instead of holding the run until CI's own limit ends it."""

import subprocess
import sys

import pytest
from server import ROOT

tomllib = pytest.importorskip("tomllib")


def test_the_suite_sets_a_limit_for_every_test():
    with open(ROOT / "pyproject.toml", "rb") as f:
        options = tomllib.load(f)["tool"]["pytest"]["ini_options"]
    assert 0 < int(options["timeout"]) <= 900


def test_a_hung_test_fails_at_the_limit(tmp_path):
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hangs():\n    time.sleep(60)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-o", "timeout=1", str(tmp_path / "test_hang.py")],
        capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "Timeout (>1.0s) from pytest-timeout" in proc.stdout and "1 failed" in proc.stdout, proc.stdout[-2000:]
