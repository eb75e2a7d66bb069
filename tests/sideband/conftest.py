"""Fixtures of the sideband tests: a private MariaDB server and archives served with -t hsmsideband.

The tests need Debian's ``mariadb-server`` (``make test`` installs it when run
as root).  Without it they fail with a message saying so, unless
``PYAI_TEST_BACKENDS`` leaves ``hsmsideband`` out (then they are skipped).
"""

import os
import secrets

import pytest
from server import ServerPool

from .mariadb import SamDB, started

SELECTED = "hsmsideband" in os.environ.get("PYAI_TEST_BACKENDS", "posix hpss hsmsideband").split()


@pytest.fixture(scope="session", autouse=True)
def _hsmsideband_selected():
    """Skip these tests (before any server starts) when PYAI_TEST_BACKENDS leaves hsmsideband out."""
    if not SELECTED:
        pytest.skip("PYAI_TEST_BACKENDS leaves hsmsideband out")


def start_mariadb(base):
    """An installed, started MariaDB with the sideband schema (fails the test when there is none)."""
    db = started(base)
    try:
        db.create_schema()
    except BaseException:
        db.stop()
        raise
    return db


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """The MariaDB server the sideband tests share (schema ``samdb``, user ``pyai``)."""
    db = start_mariadb(tmp_path_factory.mktemp("mariadb"))
    try:
        yield db
    finally:
        db.stop()


class SidebandPool(ServerPool):
    """Servers with -t hsmsideband, each by default with ``sam_qfs_prefix`` = its own prefix:
    the database names each file by its real path, which ``SamDB`` writes without being told more."""

    def __init__(self, base, mariadb, impl="c"):
        super().__init__(base, impl, "hsmsideband")
        self.base.mkdir(parents=True, exist_ok=True)
        self.mariadb = mariadb

    def start(self, name="sb", **settings):
        prefix = settings.pop("PAI_PREFIX", None) or str(self.base / f"{name}-{secrets.token_hex(4)}-prefix")
        defaults = {
            "PAI_PREFIX": prefix,
            "PAI_SAM_QFS_PREFIX": os.path.realpath(prefix),
            "PAI_USE_ID2FILENAME": "true",  # where Server.stored_path looks (the backend always uses it)
            **self.mariadb.settings(),
        }
        defaults.update(settings)
        return super().start(name, **defaults)


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
