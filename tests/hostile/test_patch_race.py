"""PATCH against an uploader who swaps the source for a symlink while it is moved.

The uploader can write the patch root ``incoming``; a secret file lives
outside every root.  One thread keeps swapping an entry of ``incoming`` between
something PATCH may move and a symlink towards the secret, other threads PATCH
that path to fresh ids, for a bounded time.  Whatever wins the race, the secret
must keep its place, bytes and mode, no id may serve its bytes and no symlink
may end up in the prefix.  (A service that checks a resolved path and then
renames and chmods by path again loses this race within a few hundred PATCHes.)
"""

import ctypes
import itertools
import os
import secrets
import threading
import time
from pathlib import Path

import pytest
import requests

RACE_SECONDS = 8.0
MAX_PATCHES = 4000
PATCHERS = 2
AT_FDCWD = -100
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a, b):
    """Swap two directory entries atomically (renameat2 RENAME_EXCHANGE)."""
    if _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a)


class Setup:
    def __init__(self, base, server):
        self.base = base
        self.server = server
        self.prefix = server.prefix
        self.incoming = base / "incoming"
        self.secret_dir = base / "secrets"
        self.secret = self.secret_dir / "f"  # the name PATCH asks for, in the variant that swaps a directory
        self.secret_bytes = b"secret " + secrets.token_hex(32).encode()
        self.secret_mode = 0o600


@pytest.fixture(scope="module")
def setup(make_server, impl, tmp_path_factory):
    base = Path(os.path.realpath(tmp_path_factory.mktemp(f"patch-race-{impl}")))
    (base / "incoming").mkdir()
    (base / "secrets").mkdir()
    return Setup(base, make_server("race", PAI_PREFIX=str(base / "prefix"), PAI_PATCH_ROOTS=str(base / "incoming")))


@pytest.fixture
def secret(setup):
    setup.secret.write_bytes(setup.secret_bytes)
    os.chmod(setup.secret, setup.secret_mode)
    yield setup.secret
    if setup.secret.exists():
        setup.secret.unlink()


def secret_intact(setup):
    try:
        st = os.lstat(setup.secret)
    except FileNotFoundError:
        return False
    return (st.st_mode & 0o7777) == setup.secret_mode and setup.secret.read_bytes() == setup.secret_bytes


def race(setup, source, swap_once, tag):
    """Swap with ``swap_once`` while PATCHing ``source``; return the ids PATCH answered 200 for."""
    stop = threading.Event()
    moved, errors = [], []
    counter = itertools.count()
    deadline = time.monotonic() + RACE_SECONDS

    def swapper():
        try:
            while not stop.is_set():
                swap_once()
        except Exception as exc:  # noqa: BLE001 -- reported by the test
            errors.append(exc)
            stop.set()

    def patcher():
        with requests.Session() as session:
            while not stop.is_set() and time.monotonic() < deadline:
                n = next(counter)
                if n >= MAX_PATCHES:
                    break
                ident = f"{tag}-{n}"
                resp = session.patch(setup.server.id_url(ident), json={"path": str(source)}, timeout=30)
                if resp.status_code == 200:
                    moved.append(ident)
                    if not secret_intact(setup):
                        break  # lost: no need to go on
                elif resp.status_code >= 500:
                    errors.append(AssertionError(f"PATCH answered {resp.status_code}: {resp.text[:300]}"))
                    break
        stop.set()

    threads = [threading.Thread(target=swapper)] + [threading.Thread(target=patcher) for _ in range(PATCHERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RACE_SECONDS + 60)
    stop.set()
    assert not errors, errors
    return moved


def assert_not_escaped(setup, moved):
    assert setup.secret.exists(), "the secret was moved out of its directory"
    assert not setup.secret.is_symlink()
    assert setup.secret.read_bytes() == setup.secret_bytes, "the secret's bytes changed"
    assert oct(os.stat(setup.secret).st_mode & 0o7777) == oct(setup.secret_mode), "the secret's mode changed"
    for dirpath, dirnames, filenames in os.walk(setup.prefix):
        for name in dirnames + filenames:
            assert not os.path.islink(os.path.join(dirpath, name)), f"a symlink in the prefix: {name}"
    with requests.Session() as session:
        for ident in moved:
            resp = session.get(setup.server.id_url(ident), timeout=30)
            assert resp.content != setup.secret_bytes, f"id {ident} serves the secret"


def test_last_component_swapped_for_a_symlink(setup, secret):
    """``incoming/f`` alternates between a decoy file and a symlink to the secret."""
    source = setup.incoming / "f"
    decoy_tmp, link_tmp = setup.incoming / ".decoy", setup.incoming / ".link"

    def swap_once():
        decoy_tmp.write_bytes(b"decoy")
        os.rename(decoy_tmp, source)
        if not link_tmp.is_symlink():
            link_tmp.symlink_to(secret)
        os.rename(link_tmp, source)

    moved = race(setup, source, swap_once, "last")
    assert_not_escaped(setup, moved)


def test_directory_component_swapped_for_a_symlink(setup, secret):
    """``incoming/d`` alternates between a real directory holding a decoy ``f`` and a
    symlink to the secret's directory (which holds the secret as ``f``)."""
    real, other = setup.incoming / "d", setup.incoming / ".other"
    real.mkdir()
    other.symlink_to(setup.secret_dir)
    # the real directory, whatever its name: decoys are made here, never through the symlink
    real_fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY)

    def swap_once():
        try:
            fd = os.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=real_fd)
        except FileExistsError:
            pass
        else:
            os.write(fd, b"decoy")
            os.close(fd)
        exchange(real, other)

    try:
        moved = race(setup, real / "f", swap_once, "dir")
    finally:
        os.close(real_fd)
    assert_not_escaped(setup, moved)
