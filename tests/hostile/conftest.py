"""Fixtures of the hostile-input tests: an arena with a canary around a real server.

The arena is one directory holding the archive prefix, a patch root
(``incoming``) and, beside them, outside both, a canary file.  inotify watches
the canary and the directories so a test can prove nothing outside the prefix
was opened, read, written, created, moved or deleted.  The tests run on the
posix backend with both I/O paths (the hpss and sideband backends reach the
same HTTP layer; their own suites cover their storage).
"""

import dataclasses
import os
import secrets
from pathlib import Path

import pytest
import requests
from fixtures.flavors import BACKENDS, IMPLS

from .corpus import LEGIT
from .inotify import IN_CREATE, IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO, Watcher

POSIX = [("posix", impl) for impl in IMPLS] if "posix" in BACKENDS else []
DIRECTORY_CHANGES = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO


@pytest.fixture(scope="session", params=POSIX, ids=lambda flavor: "-".join(flavor))
def flavor(request):
    """Here: the posix backend only, with each I/O path."""
    return request.param


@dataclasses.dataclass
class Arena:
    base: Path
    prefix: Path
    incoming: Path
    canary: Path
    canary_bytes: bytes
    legit_bytes: bytes
    server: object
    watcher: Watcher
    stored: set  # names the prefix may hold: what legitimate requests put there

    @property
    def paths(self):
        return {
            "CANARY": str(self.canary),
            "INCOMING": str(self.incoming),
            "PREFIX": str(self.prefix),
            "ARENA": str(self.base),
        }

    def touched(self):
        """What happened outside the prefix since the last call (should be nothing)."""
        return self.watcher.events()

    def unexpected_in_prefix(self):
        return sorted(p.name for p in self.prefix.iterdir() if p.name not in self.stored)

    def healthy(self):
        """The service still answers: GET / and the legitimate file, byte for byte."""
        root = requests.get(self.server.url + "/", timeout=10)
        legit = requests.get(self.server.id_url(LEGIT), timeout=10)
        return root.status_code == 200 and legit.status_code == 200 and legit.content == self.legit_bytes


@pytest.fixture(scope="module")
def arena(server_pool, request, backend, impl, tmp_path_factory):
    base = Path(os.path.realpath(tmp_path_factory.mktemp(f"arena-{impl}")))
    prefix, incoming = base / "prefix", base / "incoming"
    prefix.mkdir()
    incoming.mkdir()
    canary = base / "canary"
    canary_bytes = b"canary " + secrets.token_hex(16).encode()
    canary.write_bytes(canary_bytes)
    (incoming / "keep").write_bytes(b"a file in the patch root that no hostile request may move")
    (incoming / "link-to-canary").symlink_to(canary)
    (incoming / "link-to-arena").symlink_to(base)
    # stopped before the canary is read a last time: whatever the server did, it has done
    with server_pool(request, backend, impl) as pool:
        srv = pool.start("hostile", PAI_PREFIX=str(prefix), PAI_PATCH_ROOTS=str(incoming))
        legit_bytes = os.urandom(20000)  # above the inline limit: GETs go through sendfile
        assert requests.put(srv.id_url(LEGIT), data=legit_bytes, timeout=10).status_code == 201
        watcher = Watcher()
        try:
            watcher.watch(canary)
            watcher.watch(base, DIRECTORY_CHANGES)
            watcher.watch(incoming, DIRECTORY_CHANGES)
            watcher.watch(incoming / "keep")
            yield Arena(base, prefix, incoming, canary, canary_bytes, legit_bytes, srv, watcher, {LEGIT})
        finally:
            watcher.close()
        assert canary.read_bytes() == canary_bytes
