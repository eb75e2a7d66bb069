"""Fixtures of the Tape REST API tests: real gunicorn servers (posix, the HPSS emulator); the
requests they make are in tests/tape_client.py."""

import pytest
from emulator import HAS_HPSS
from server import ServerPool
from tape_client import tape_settings


@pytest.fixture(scope="module")
def posix_pool(tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp("tape-posix"), "c", "posix") as pool:
        yield pool


@pytest.fixture(scope="module")
def posix(posix_pool):
    return posix_pool.start("tape", **tape_settings(PAI_TAPE_MAX_ARCHIVEINFO="5", PAI_TAPE_MAX_FILES="20"))


@pytest.fixture
def hpss_pool(tmp_path):
    if not HAS_HPSS:
        pytest.skip("pyai.hpss_client._hpss is not built")
    with ServerPool(tmp_path / "servers", "c", "hpss") as pool:
        yield pool
