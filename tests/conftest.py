"""Fixtures of the end-to-end suite: real gunicorn servers for both implementations.

``impl`` is "c" or "python" (``PYAI_IMPL``); every server fixture depends on it,
so each integration test runs against both.  ``server`` is the default
configuration, shared by the whole session; ``make_server`` (module scope) and
``fresh_server`` (test scope) start servers with extra settings.
"""

import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server import LIVE, COUNTER, ServerPool  # noqa: E402

# PYAI_TEST_IMPLS narrows the run to one I/O path (make test-c / make test-python).
IMPLS = tuple(os.environ.get("PYAI_TEST_IMPLS", "c python").split())


@pytest.fixture(scope="session", params=IMPLS)
def impl(request):
    return request.param


@pytest.fixture(scope="session")
def server(impl, tmp_path_factory):
    """The default configuration (safe names, write-once, no limits), one per impl."""
    pool = ServerPool(tmp_path_factory.mktemp(f"default-{impl}"), impl)
    try:
        yield pool.start("default")
    finally:
        pool.close()


@pytest.fixture(scope="module")
def make_server(impl, tmp_path_factory):
    pool = ServerPool(tmp_path_factory.mktemp(f"mod-{impl}"), impl)
    try:
        yield pool.start
    finally:
        pool.close()


@pytest.fixture
def fresh_server(impl, tmp_path):
    pool = ServerPool(tmp_path / "servers", impl)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def uid():
    """A fresh safe-name id."""
    return f"t{os.getpid()}-{next(COUNTER)}-{secrets.token_hex(4)}"


@pytest.fixture
def int_id():
    """A fresh integer id (valid in both id modes)."""
    return str(secrets.randbits(40) | (1 << 40))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and LIVE:
        for srv in list(LIVE)[-3:]:
            report.sections.append((f"server log {srv.url}", srv.log(3000)))
