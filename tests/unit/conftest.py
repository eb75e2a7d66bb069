"""Fixtures of the tests of the I/O primitives (test_fileio, test_chunked), which run against
both twins: pyai.native._cimpl (C) and pyai.native._pyimpl (Python)."""

import importlib
import os

import pytest


@pytest.fixture(params=["c", "python"])
def fio(request):
    """The implementation under test (ImportError, hence failure, if C is not built)."""
    return importlib.import_module({"c": "pyai.native._cimpl", "python": "pyai.native._pyimpl"}[request.param])


@pytest.fixture
def out(tmp_path):
    """A descriptor of an empty file open for writing, and a function reading the file back."""
    path = tmp_path / "out"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        yield fd, path.read_bytes
    finally:
        os.close(fd)
