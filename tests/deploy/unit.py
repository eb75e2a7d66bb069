"""The shipped deployment files, read and rendered for this checkout.

A systemd unit is read as systemd reads it (sections, ``key=value``, a key may
repeat); ``render_unit`` points its /opt/pyai paths at this checkout, so what runs
here is the shipped command line with nothing but its paths changed.
"""

import shlex
import sys
from pathlib import Path

from harness import ROOT

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "pyai.service"
NGINX_CONF = DEPLOY / "nginx" / "pyai.conf"
INSTALL_DIR = "/opt/pyai"  # where the unit expects pyai: the venv, gunicorn.conf.py, wsgi.py
VENV_BIN = Path(sys.executable).parent  # this checkout's .venv/bin


def render_unit(text):
    """The unit with /opt/pyai/.venv/bin as this venv and /opt/pyai as this checkout."""
    assert INSTALL_DIR + "/.venv/bin/" in text, "the unit no longer runs from /opt/pyai/.venv"
    return text.replace(INSTALL_DIR + "/.venv/bin", str(VENV_BIN)).replace(INSTALL_DIR, str(ROOT))


def parse_unit(text):
    """{(section, key): [values, in order]} of a unit file (comments and blank lines skipped)."""
    entries = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"not a unit line: {raw!r}"
        entries.setdefault((section, key.strip()), []).append(value.strip())
    return entries


def one(entries, key, section="Service"):
    """The single value of ``key`` (the last one, as systemd takes it)."""
    values = entries.get((section, key))
    assert values, f"{key}= missing from [{section}]"
    return values[-1]


def environment(entries):
    """The variables the unit's Environment= lines set."""
    env = {}
    for line in entries.get(("Service", "Environment"), []):
        for assignment in shlex.split(line):
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def exec_start(entries):
    """ExecStart= as an argument list (no prefix characters: the command is run as written)."""
    command = one(entries, "ExecStart")
    assert command[0] not in "@-:+!", f"ExecStart has a prefix this test does not model: {command}"
    return shlex.split(command)
