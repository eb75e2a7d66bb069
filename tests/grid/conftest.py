"""Fixtures of the grid client tests: gfal2's command-line tools and REDbot, run as real
subprocesses against the real service.

gfal2 runs with a private HOME and XDG directories (it keeps nothing there today, but a
test must not read or write the user's), TZ=UTC (gfal-stat prints local times), and
GFAL_PYTHONBIN set: the gfal scripts otherwise look for a ``python`` that imports gfal2.
"""

import os
import shutil
import subprocess

import pytest

GFAL_TIMEOUT = 120  # seconds for one gfal command (bring-online polls inside it)
SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's python3-gfal2 is importable

if shutil.which("gfal-copy") is None:
    pytest.skip("gfal2 is not installed (make system-deps installs it)", allow_module_level=True)


class Gfal:
    """Runs gfal commands in an isolated environment; ``last`` is the last CompletedProcess."""

    def __init__(self, home):
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"),
            "TZ": "UTC",
            "LANG": "C.UTF-8",
            "GFAL_PYTHONBIN": os.environ.get("GFAL_PYTHONBIN", SYSTEM_PYTHON),
        }

    def run(self, *args, check=True):
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=GFAL_TIMEOUT)
        if check:
            assert proc.returncode == 0, (args, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
        return proc


@pytest.fixture
def gfal(tmp_path):
    return Gfal(tmp_path / "gfal-home")
