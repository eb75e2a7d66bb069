"""Fixtures of the deployment-kit tests: a pool of real servers."""

import pytest
from server import ServerPool


@pytest.fixture
def pool(tmp_path):
    """Starts real pyai servers (gunicorn, posix backend, the C I/O path) for one test."""
    servers = ServerPool(tmp_path / "servers", "c", "posix")
    try:
        yield servers
    finally:
        servers.close()
