"""``make run`` as the README shows it: with ``CONFIG=`` the file's prefix applies.

The Makefile once passed ``--prefix ./archive -t posix`` whatever ``CONFIG=`` said,
so a site's INI was read and its prefix silently replaced.  ``make run`` is run here
for real (the virtualenv and the extension are already made by ``make test``), and a
file PUT through it must land under the INI's prefix and nowhere under ``./archive``.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest
import requests
from server import ROOT, free_port, service_env

START_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def serve_with_make(tmp_path, *args):
    """``make run <args>`` started in its own session; (process, its log's path)."""
    home = tmp_path / "home"
    home.mkdir()
    env = service_env(home)
    for key in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # not the make running the tests
        env.pop(key, None)
    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log_path


def wait_for_service(proc, url, log_path):
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert proc.poll() is None, f"make run exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
        try:
            if requests.get(url + "/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"no 200 in {START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.2)


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_make_run_honours_the_config_files_prefix(tmp_path):
    prefix = tmp_path / "site-prefix"
    ini = tmp_path / "site.ini"
    ini.write_text(f"[archive]\nprefix = {prefix}\n")
    port = free_port()
    ident = f"make-run-{os.getpid()}-{time.time_ns()}"
    default_place = ROOT / "archive" / ident
    proc, log_path = serve_with_make(tmp_path, f"CONFIG={ini}", f"PORT={port}")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_service(proc, url, log_path)
        resp = requests.put(f"{url}/{ident}", data=b"stored where the INI says", timeout=30)
        assert resp.status_code == 201, resp.text
        assert not default_place.exists(), "make run replaced the INI's prefix with ./archive"
        assert (prefix / ident).read_bytes() == b"stored where the INI says"
    finally:
        stop(proc)
        if default_place.exists():
            default_place.chmod(0o600)
            default_place.unlink()
