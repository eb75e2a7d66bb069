"""Fixtures of the sideband tests: archives served with -t hsmsideband over the run's MariaDB
(``mariadb``, from the root).

The tests need Debian's ``mariadb-server`` (``make test`` installs it when run
as root).  Without it they fail with a message saying so, unless
``PYAI_TEST_BACKENDS`` leaves ``hsmsideband`` out (then they are skipped).
"""

import os

import pytest

from .mariadb import SamDB

SELECTED = "hsmsideband" in os.environ.get("PYAI_TEST_BACKENDS", "posix hpss hsmsideband").split()


@pytest.fixture(scope="session", autouse=True)
def _hsmsideband_selected():
    """Skip these tests (before any server starts) when PYAI_TEST_BACKENDS leaves hsmsideband out."""
    if not SELECTED:
        pytest.skip("PYAI_TEST_BACKENDS leaves hsmsideband out")


@pytest.fixture(scope="module")
def sideband_pool(server_pool, request, mariadb):
    return server_pool(request, "hsmsideband", mariadb=mariadb)


@pytest.fixture
def fresh_sideband(server_pool, request, mariadb):
    return server_pool(request, "hsmsideband", mariadb=mariadb)


@pytest.fixture(scope="module")
def sideband(sideband_pool):
    """A server with -t hsmsideband over the shared database."""
    return sideband_pool.start("sideband")


@pytest.fixture(scope="module")
def samdb(mariadb, sideband_pool):
    """Writes sideband rows for the files of the pool's servers."""
    return SamDB(mariadb)
