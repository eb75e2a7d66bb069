"""``make run`` as the README shows it: with ``CONFIG=`` the file's prefix applies.

The Makefile once passed ``--prefix ./archive -t posix`` whatever ``CONFIG=`` said,
so a site's INI was read and its prefix silently replaced.  ``make run`` is run here
for real (the virtualenv and the extension are already made by ``make test``), and a
file PUT through it must land under the INI's prefix and nowhere under ``./archive``.
"""

import os
import shutil
import time

import pytest
import requests
from server import ROOT, Server, free_port, service_env

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def test_make_run_honours_the_config_files_prefix(tmp_path):
    prefix = tmp_path / "site-prefix"
    ini = tmp_path / "site.ini"
    ini.write_text(f"[archive]\nprefix = {prefix}\n")
    home = tmp_path / "home"
    home.mkdir()
    env = service_env(home)
    for key in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # not those of a make running the tests
        env.pop(key, None)
    port = free_port()
    command = ["make", "--no-print-directory", "run", f"CONFIG={ini}", f"PORT={port}"]
    server = Server(tmp_path, env, command=command, port=port, prefix=prefix)
    ident = f"make-run-{os.getpid()}-{time.time_ns()}"
    default_place = ROOT / "archive" / ident
    server.start()
    try:
        resp = requests.put(server.id_url(ident), data=b"stored where the INI says", timeout=30)
        assert resp.status_code == 201, resp.text
        assert not default_place.exists(), "make run replaced the INI's prefix with ./archive"
        assert (prefix / ident).read_bytes() == b"stored where the INI says"
    finally:
        server.stop()
        if default_place.exists():
            default_place.chmod(0o600)
            default_place.unlink()
