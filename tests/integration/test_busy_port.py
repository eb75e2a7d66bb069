"""A port another process holds: one line that says so and how to fix it, and nothing created.

gunicorn alone would try five times in five seconds and give no hint, after pyai had
already made the prefix; pyai listens first, before it creates anything.
"""

import socket
import subprocess
import sys

import pytest
from harness import ROOT, gunicorn_command, service_env


@pytest.mark.parametrize("how", ["gunicorn", "cli"])
def test_a_busy_port_gives_one_line_with_the_fix_and_creates_nothing(tmp_path, how):
    home = tmp_path / "home"
    home.mkdir()
    prefix = tmp_path / "prefix"  # made by a start that gets to serve, never by one that cannot listen
    env = service_env(home, PAI_PREFIX=str(prefix), PAI_BACKEND_TYPE="posix", TMPDIR=str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if how == "gunicorn":
            command = gunicorn_command(port)
        else:  # the worktree's command line (the installed script may import another checkout)
            command = [sys.executable, "-m", "pyai", "-p", str(port), "--prefix", str(prefix)]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    status, output = done.returncode, done.stdout + done.stderr
    lines = [line for line in output.splitlines() if "in use" in line]
    assert status == 1, output
    assert len(lines) == 1, output
    assert f"127.0.0.1:{port} is already in use" in lines[0], lines[0]
    assert "-p PORT" in lines[0] and "PAI_BIND" in lines[0], lines[0]
    assert "Retrying" not in output and "Traceback" not in output, output
    assert not prefix.exists()
    assert not list(tmp_path.glob("pyai-metrics-*"))  # nor the metrics directory
