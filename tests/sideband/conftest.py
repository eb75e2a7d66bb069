"""Fixtures of the sideband tests: a private MariaDB server and archives served with -t hsmsideband.

The tests need Debian's ``mariadb-server`` (``make test`` installs it when run
as root).  Without it they fail with a message saying so, unless
``PYAI_TEST_BACKENDS`` leaves ``hsmsideband`` out (then they are skipped).
"""

import os

import pytest

from .mariadb import SamDB, SidebandPool, start_mariadb

SELECTED = "hsmsideband" in os.environ.get("PYAI_TEST_BACKENDS", "posix hpss hsmsideband").split()


@pytest.fixture(scope="session", autouse=True)
def _hsmsideband_selected():
    """Skip these tests (before any server starts) when PYAI_TEST_BACKENDS leaves hsmsideband out."""
    if not SELECTED:
        pytest.skip("PYAI_TEST_BACKENDS leaves hsmsideband out")


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """The MariaDB server the sideband tests share (schema ``samdb``, user ``pyai``)."""
    db = start_mariadb(tmp_path_factory.mktemp("mariadb"))
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="module")
def sideband_pool(mariadb, tmp_path_factory):
    pool = SidebandPool(tmp_path_factory.mktemp("sideband"), mariadb)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def fresh_sideband(mariadb, tmp_path):
    pool = SidebandPool(tmp_path / "servers", mariadb)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def sideband(sideband_pool):
    """A server with -t hsmsideband over the shared database."""
    return sideband_pool.start("sideband")


@pytest.fixture(scope="module")
def samdb(mariadb, sideband_pool):
    """Writes sideband rows for the files of the pool's servers."""
    return SamDB(mariadb)
