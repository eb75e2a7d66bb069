"""The system tools the deployment tests drive: found, or a clear skip (or failure, as root)."""

import os
import shutil

import pytest


def require_tool(command, package):
    """The path of ``command``; skip when it is missing and we cannot install it (not root),
    fail when it is missing as root (``make system-deps`` installs it then)."""
    path = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    if path:
        return path
    message = f"{command} is not installed (Debian package {package}: apt-get install {package})"
    if os.geteuid() != 0:
        pytest.skip(message)
    pytest.fail(message + "; `make system-deps` installs it")
