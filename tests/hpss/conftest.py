"""Fixtures of the HPSS tests: the emulator library in-process, and archives served with -t hpss."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("pyai.hpss_client._hpss") is None:
    pytest.skip("pyai.hpss_client._hpss is not built (PYAI_NO_EXTENSIONS?)", allow_module_level=True)

from server import ServerPool  # noqa: E402

EMU_CLI = str(Path(sys.executable).parent / "pyai-hpss-emu")


@pytest.fixture
def emu(tmp_path, monkeypatch):
    """The emulator logged in over a fresh root, in this process: (pyai.hpss_client, root)."""
    from pyai import hpss_client as hpss

    root = tmp_path / "ns"
    root.mkdir()
    monkeypatch.setenv(hpss.EMULATOR_ROOT_ENV, str(root))
    assert hpss.lib.pyai_login(b"tester", b"") == 0
    yield hpss, root
    hpss.lib.hpss_PurgeLoginCred()


def emu_cli(root, *args, check=True):
    """Run the admin command against the emulated namespace ``root``."""
    proc = subprocess.run([EMU_CLI, "--root", str(root), *map(str, args)], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def hpss_pool(tmp_path_factory):
    pool = ServerPool(tmp_path_factory.mktemp("hpss"), "c", "hpss")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def fresh_hpss(tmp_path):
    pool = ServerPool(tmp_path / "servers", "c", "hpss")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def tape(hpss_pool):
    """A server on the emulator with a short stage and GETs that wait for it."""
    srv = hpss_pool.start("tape", PAI_HPSS_STAGE_TIMEOUT="30", PAI_HPSS_PING_INTERVAL="0")
    emu_cli(srv.prefix, "set-stage-delay", "1.0")
    return srv
