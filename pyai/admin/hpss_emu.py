"""pyai-hpss-emu: drive the HPSS emulator under a running (or stopped) archive.

    pyai-hpss-emu [--root DIR] purge ID|PATH...        leave the files on tape only
    pyai-hpss-emu [--root DIR] stage [--wait] ID|PATH...  bring them back to disk
    pyai-hpss-emu [--root DIR] status ID|PATH...       bytes per level and medium
    pyai-hpss-emu [--root DIR] stages ID|PATH...       how many stages were queued for each, ever
    pyai-hpss-emu [--root DIR] set-stage-delay SECONDS how long a stage takes
    pyai-hpss-emu [--root DIR] set-latency SECONDS     how long a core-server ping takes
    pyai-hpss-emu [--root DIR] down | up               the core server stops / starts answering
    pyai-hpss-emu [--root DIR] deny-login | allow-login

DIR is the emulated namespace, the archive's prefix (default $PYAI_HPSS_EMU_ROOT,
else $PAI_PREFIX).  An ID is a file id of an archive whose prefix is DIR.
Purge, stage and status go through the HPSS API of the emulator library;
the settings are files in DIR/.hpss-emu that every call reads afresh.  Stages
asks the library for its own record of a file (what no HPSS call tells): a test
proves that a request started no stage by the count, without waiting for one.
"""

import argparse
import os
import sys

from pyai.errors import describe

STATE_DIR = ".hpss-emu"


def _path(root, name):
    if name.isdigit():
        from pyai.archive.ids import id2filename

        return root.rstrip("/") + id2filename(int(name))
    return os.path.abspath(name)


def _write_setting(root, name, text):
    directory = os.path.join(root, STATE_DIR)
    os.makedirs(directory, exist_ok=True)
    temp = os.path.join(directory, f".{name}.{os.getpid()}")
    with open(temp, "w") as handle:
        handle.write(text)
    os.replace(temp, os.path.join(directory, name))


def _remove_setting(root, name):
    try:
        os.unlink(os.path.join(root, STATE_DIR, name))
    except FileNotFoundError:
        pass


def _client(root):
    from pyai import hpss_client as hpss

    if not hpss.EMULATOR:
        raise SystemExit("pyai-hpss-emu: pyai is built against a real HPSS, not the emulator")
    os.environ[hpss.EMULATOR_ROOT_ENV] = root
    try:
        hpss.Session("pyai-hpss-emu", "", "emulator").ensure()
    except OSError as exc:
        raise SystemExit(f"pyai-hpss-emu: cannot log in to the emulator at {root}: {describe(exc)}") from None
    return hpss


def _purge(hpss, path, args):
    fd = hpss.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        return f"{path}: purged {hpss.purge(fd)} bytes"
    finally:
        hpss.close(fd)


def _stage(hpss, path, args):
    size = hpss.stat(path).size
    fd = hpss.open(path, os.O_RDONLY | os.O_NONBLOCK)
    # Closing waits for an asynchronous stage; without --wait this process
    # exits instead and the emulator completes the stage on its own schedule.
    try:
        hpss.stage(fd, size, asynchronous=not args.wait)
    finally:
        if args.wait:
            hpss.close(fd)
    return f"{path}: {'staged' if args.wait else 'stage started'}"


def _status(hpss, path, args):
    from pyai.backends.hpss import media_of

    size, per_level = hpss.levels(path)
    return f"{path}: size {size} levels {per_level!r} {media_of(size, per_level)}"


def _stages(hpss, path, args):
    return f"{path}: stages {hpss.emulator_stages(path)}"


# What each command that names files does to each of them.
ACTIONS = {"purge": _purge, "stage": _stage, "status": _status, "stages": _stages}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyai-hpss-emu", description="Drive pyai's HPSS emulator.")
    parser.add_argument("--root", default=os.environ.get("PYAI_HPSS_EMU_ROOT") or os.environ.get("PAI_PREFIX"))
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("purge", "status", "stages"):
        commands.add_parser(name).add_argument("files", nargs="+")
    staging = commands.add_parser("stage")
    staging.add_argument("--wait", action="store_true", help="return when the file is on disk")
    staging.add_argument("files", nargs="+")
    for name in ("set-stage-delay", "set-latency"):
        commands.add_parser(name).add_argument("seconds", type=float)
    for name in ("down", "up", "deny-login", "allow-login"):
        commands.add_parser(name)
    args = parser.parse_args(argv)
    if not args.root:
        parser.error("give --root DIR (the archive prefix) or set PYAI_HPSS_EMU_ROOT")
    root = os.path.realpath(args.root)
    if args.command in ("set-stage-delay", "set-latency"):
        if args.seconds < 0:
            parser.error("seconds must not be negative")
        name = "stage_delay" if args.command == "set-stage-delay" else "ping_latency"
        _write_setting(root, name, f"{args.seconds}\n")
    elif args.command in ("down", "deny-login"):
        _write_setting(root, "down" if args.command == "down" else "deny-login", "")
    elif args.command in ("up", "allow-login"):
        _remove_setting(root, "down" if args.command == "up" else "deny-login")
    else:
        hpss = _client(root)
        action = ACTIONS[args.command]
        failed = 0
        for name in args.files:
            path = _path(root, name)
            try:
                print(action(hpss, path, args))
            except OSError as exc:
                print(f"pyai-hpss-emu: {path}: {describe(exc)}", file=sys.stderr)
                failed = 1
        return failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
