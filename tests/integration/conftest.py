"""Fixtures of the integration tests (the servers are the root's: ``server``, ``make_server``...)."""

import os

import pytest


@pytest.fixture
def payload(tmp_path):
    """A file to upload, big enough for curl to send Expect: 100-continue: (path, bytes)."""
    data = os.urandom(3 * 1024 * 1024 + 11)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data
