"""The grid client tests (gfal2, REDbot) need gfal2: without it, this directory is skipped
(the ``gfal`` fixture itself is ``tests/fixtures/gfal.py``)."""

import shutil

import pytest

if shutil.which("gfal-copy") is None:
    pytest.skip("gfal2 is not installed (make system-deps installs it)", allow_module_level=True)
