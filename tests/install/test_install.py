"""A plain ``pip install`` of the project, no ``make``, gives a working archive.

The install is made from a clean copy of the tree (what git tracks, or would: no
extension, generated C or ``build/`` that ``make compile`` left), into a fresh venv,
with pip's own build isolation, as a user would.  Everything then runs with its
working directory outside the repository, so nothing can come from the source tree.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import time
import venv
from pathlib import Path

import pytest
import requests
from server import ROOT, free_port, service_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the install alone may take INSTALL_TIMEOUT

INSTALL_TIMEOUT = 600
START_TIMEOUT = 30.0


def clean_copy(dest):
    """The files git tracks, or would (untracked but not ignored), copied to ``dest``."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is left out
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def run(args, cwd, timeout=120, env=None):
    proc = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{args} exited {proc.returncode}:\n{proc.stdout.decode()[-3000:]}\n{proc.stderr.decode()[-3000:]}"
    )
    return proc.stdout.decode()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, the installed package's directory, a directory outside the repository)."""
    base = tmp_path_factory.mktemp("install")
    source = clean_copy(base / "src")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    outside = base / "elsewhere"
    outside.mkdir()
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run([str(python), "-m", "pip", "install", "-q", str(source)], cwd=outside, timeout=INSTALL_TIMEOUT, env=pip_env)
    package = Path(
        run([str(python), "-c", "import os, pyai; print(os.path.dirname(pyai.__file__))"], cwd=outside).strip()
    )
    return python, package, outside


def test_installed_outside_the_source_tree(installed):
    python, package, _ = installed
    assert package.is_relative_to(python.parent.parent), package
    assert not package.is_relative_to(ROOT), package


def test_package_data_is_installed(installed):
    _, package, _ = installed
    assert (package / "web" / "openapi.yaml").is_file()
    assert (package / "hpss_client" / "libhpss_emu.so").is_file()
    # PEP 561: a project that imports pyai is type-checked against its annotations
    assert (package / "py.typed").is_file()
    assert (package / "native" / "_cimpl.pyi").is_file()


def test_native_extensions_import_from_the_venv(installed):
    python, package, outside = installed
    out = run(
        [
            str(python),
            "-c",
            "import pyai.native._cimpl as c, pyai.hpss_client._hpss as h; print(c.__file__); print(h.__file__)",
        ],
        cwd=outside,
    )
    cimpl, hpss = out.split()
    assert Path(cimpl).is_relative_to(package) and Path(hpss).is_relative_to(package), out
    # the binding finds its emulator library beside it (rpath $ORIGIN), not on any search path of ours
    maps = run(
        [str(python), "-c", "import pyai.hpss_client._hpss; print(open('/proc/self/maps').read())"],
        cwd=outside,
        env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"},
    )
    assert str(package / "hpss_client" / "libhpss_emu.so") in maps


def test_served_archive_round_trip(installed, tmp_path):
    python, _, outside = installed
    port = free_port()
    prefix = tmp_path / "prefix"
    home = tmp_path / "home"
    home.mkdir()
    log_path = tmp_path / "server.log"
    command = [str(python.parent / "pacifica-archiveinterface"), "-p", str(port), "--prefix", str(prefix)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=outside,
            env=service_env(home),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
            try:
                if requests.get(url + "/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"no 200 on GET / in {START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.2)
        body = os.urandom(3 << 20) + b"end"
        resp = requests.put(f"{url}/packaged.bin", data=body, timeout=30)
        assert resp.status_code == 201, resp.text
        resp = requests.get(f"{url}/packaged.bin", timeout=30)
        assert resp.status_code == 200
        assert hashlib.sha256(resp.content).hexdigest() == hashlib.sha256(body).hexdigest()
        assert (prefix / "packaged.bin").read_bytes() == body
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert proc.returncode == 0, log_path.read_text()[-3000:]
