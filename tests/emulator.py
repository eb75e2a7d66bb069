"""The HPSS emulator as the tests drive it: its admin command, the stages it was asked for,
an archive whose files can go to tape and come back (``start_tape``), and its namespace read
in this process as another HPSS tool would (``logged_in``)."""

import contextlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

HAS_HPSS = importlib.util.find_spec("pyai.hpss_client._hpss") is not None
EMU_CLI = str(Path(sys.executable).parent / "pyai-hpss-emu")
# GETs of a file on tape wait for its stage; no core-server ping between requests
TAPE_SETTINGS = {"PAI_HPSS_STAGE_TIMEOUT": "30", "PAI_HPSS_PING_INTERVAL": "0"}


def emu_cli(root, *args, check=True):
    """Run the emulator's admin command against the emulated namespace ``root``."""
    proc = subprocess.run([EMU_CLI, "--root", str(root), *map(str, args)], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def stages(srv, ident):
    """How many stages the emulator has queued for the file of ``ident`` (an id or a path):
    0 proves at once that no request started one, where waiting longer than a stage would only
    make it likely."""
    return int(emu_cli(srv.prefix, "stages", ident).stdout.rsplit(" ", 1)[1])


def start_tape(pool, name="tape", stage_delay=1.0, **settings):
    """A server of ``pool`` (backend hpss) whose files can be purged to tape; a stage back to
    disk takes ``stage_delay`` seconds."""
    srv = pool.start(name, **{**TAPE_SETTINGS, **settings})
    emu_cli(srv.prefix, "set-stage-delay", stage_delay)
    return srv


@contextlib.contextmanager
def logged_in(root):
    """pyai.hpss_client logged in to the emulated namespace ``root`` in this process; the login
    and the environment are as they were after."""
    from pyai import hpss_client as hpss  # here: only the tests that read HPSS load the binding

    saved = os.environ.get(hpss.EMULATOR_ROOT_ENV)
    os.environ[hpss.EMULATOR_ROOT_ENV] = str(root)
    try:
        assert hpss.lib.pyai_login(b"tester", b"") == 0
        try:
            yield hpss
        finally:
            hpss.lib.hpss_PurgeLoginCred()
    finally:
        if saved is None:
            del os.environ[hpss.EMULATOR_ROOT_ENV]
        else:
            os.environ[hpss.EMULATOR_ROOT_ENV] = saved
