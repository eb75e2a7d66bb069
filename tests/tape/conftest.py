"""Fixtures of the Tape REST API tests: real gunicorn servers (posix here, the HPSS emulator's
``fresh_hpss`` from the root); the requests they make are in tests/tape_client.py."""

import pytest
from tape_client import tape_settings


@pytest.fixture(scope="module")
def posix_pool(server_pool, request):
    return server_pool(request)


@pytest.fixture(scope="module")
def posix(posix_pool):
    return posix_pool.start("tape", **tape_settings(PAI_TAPE_MAX_ARCHIVEINFO="5", PAI_TAPE_MAX_FILES="20"))
