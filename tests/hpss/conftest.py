"""Fixtures of the HPSS tests: the emulator library in-process, and archives served with -t hpss
(``hpss_pool`` for a module; ``fresh_hpss``, for one test, is the root's)."""

import pytest
from emulator import HAS_HPSS

if not HAS_HPSS:
    pytest.skip("pyai.hpss_client._hpss is not built (PYAI_NO_EXTENSIONS?)", allow_module_level=True)


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


@pytest.fixture(scope="module")
def hpss_pool(server_pool, request):
    return server_pool(request, "hpss")
