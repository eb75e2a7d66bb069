"""Fixtures of the end-to-end suite: real gunicorn servers for both implementations.

``impl`` is "c" or "python" (``PYAI_IMPL``); every server fixture depends on it,
so each integration test runs against both.  ``server`` is the default
configuration, shared by the whole session; ``make_server`` (module scope) and
``fresh_server`` (test scope) start servers with extra settings.
"""

import importlib.util
import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from emulator import HAS_HPSS, start_tape  # noqa: E402
from server import COUNTER, LIVE, ServerPool  # noqa: E402

# PYAI_TEST_IMPLS narrows the run to one I/O path (make test-c / make test-python).
IMPLS = tuple(os.environ.get("PYAI_TEST_IMPLS", "c python").split())
# PYAI_TEST_BACKENDS narrows it to some backends.  hpss runs on the emulator,
# with one I/O path only: its uploads go through hpss_Write, never the C receive.
# hsmsideband has its own tests (tests/sideband, on a private MariaDB).
BACKENDS = tuple(os.environ.get("PYAI_TEST_BACKENDS", "posix hpss hsmsideband").split())
if "hpss" in BACKENDS and importlib.util.find_spec("pyai.hpss_client._hpss") is None:
    BACKENDS = tuple(b for b in BACKENDS if b != "hpss")  # a pure-Python build has no binding
FLAVORS = [("posix", impl) for impl in IMPLS if "posix" in BACKENDS]
if "hpss" in BACKENDS:
    FLAVORS.append(("hpss", "c" if "c" in IMPLS else IMPLS[0]))


def pytest_collection_modifyitems(config, items):
    """Skip on hpss what is marked ``posix_only(reason)`` (ids that are names, the posix layout...)."""
    for item in items:
        flavor = getattr(getattr(item, "callspec", None), "params", {}).get("flavor")
        if flavor is None or flavor[0] != "hpss":
            continue
        marker = item.get_closest_marker("posix_only")
        if marker is not None:
            reason = (marker.args or ["posix only"])[0]
            item.add_marker(pytest.mark.skip(reason=f"posix only: {reason}"))


@pytest.fixture(scope="session", params=FLAVORS, ids=lambda flavor: "-".join(flavor))
def flavor(request):
    """(backend, impl): the server fixtures run every test on each."""
    return request.param


@pytest.fixture(scope="session")
def impl(flavor):
    return flavor[1]


@pytest.fixture(scope="session")
def backend(flavor):
    return flavor[0]


@pytest.fixture(scope="session")
def server(backend, impl, tmp_path_factory):
    """The default configuration (safe names, write-once, no limits), one per flavor."""
    with ServerPool(tmp_path_factory.mktemp(f"default-{backend}-{impl}"), impl, backend) as pool:
        yield pool.start("default")


@pytest.fixture(scope="module")
def make_server(backend, impl, tmp_path_factory):
    with ServerPool(tmp_path_factory.mktemp(f"mod-{backend}-{impl}"), impl, backend) as pool:
        yield pool.start


@pytest.fixture
def fresh_server(backend, impl, tmp_path):
    with ServerPool(tmp_path / "servers", impl, backend) as pool:
        yield pool


@pytest.fixture(scope="module")
def tape(tmp_path_factory):
    """An archive on the HPSS emulator whose files can go to tape: a stage back takes a second."""
    if not HAS_HPSS:
        pytest.skip("pyai.hpss_client._hpss is not built (PYAI_NO_EXTENSIONS?)")
    with ServerPool(tmp_path_factory.mktemp("tape"), "c", "hpss") as pool:
        yield start_tape(pool)


@pytest.fixture
def pool(tmp_path):
    """Real servers (gunicorn, posix, the C I/O path) for one test of what no flavor changes:
    the operator's endpoints, the lifecycle, the deployment kit."""
    with ServerPool(tmp_path / "servers", "c", "posix") as servers:
        yield servers


@pytest.fixture
def uid(backend):
    """A fresh id: a safe name on posix, an integer on hpss (where ids are integers)."""
    if backend == "hpss":
        return str(secrets.randbits(40) | (1 << 41))
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
