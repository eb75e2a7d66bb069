"""Fixtures of the fault-injection tests: fresh ids, and servers whose workers can be counted.

The servers are the real gunicorn (``tests/server.py``) on each flavor of the
suite; the faults (signals, hang-ups, full, read-only and failing file systems,
a second instance) are real too.
"""

import secrets

import pytest

from .procs import WORKERS


@pytest.fixture
def new_id():
    """Fresh integer ids: valid in every id mode and on every backend."""
    return lambda: str(secrets.randbits(40) | (1 << 40))


@pytest.fixture
def start(fresh_server):
    """Start a server of this test's flavor with WORKERS workers and the given settings."""

    def start_server(name="faults", **settings):
        settings.setdefault("PAI_WORKERS", str(WORKERS))
        return fresh_server.start(name, **settings)

    return start_server


@pytest.fixture(scope="module")
def shared(make_server):
    """One server per module and flavor, for tests that leave it as they found it.

    A short receive_timeout, so clients that stall are dropped soon.
    """
    return make_server("shared", PAI_WORKERS=str(WORKERS), PAI_RECEIVE_TIMEOUT="3")
