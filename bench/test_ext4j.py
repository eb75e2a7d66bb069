"""Small and large PUTs on a journaled ext4: a loop-mounted image under /var/tmp.

The root ext4 of the VM the figures come from has no journal, so what pyai's
fsyncs cost on a journaled ext4 (where a directory fsync commits the journal) is
measured here, on an image made for the run: ``truncate``, ``mkfs.ext4`` (with its
journal; inode tables and journal written at once, so no ext4lazyinit thread
writes during the measurements), ``mount -o loop``.  pyai (PYAI_IMPL=c, defaults:
sha256, durable) and nginx serve a prefix on it; raw is dd and ``durable_creates``
on it.  Needs root; otherwise, or when mounting fails, the rows are skipped with a
note.  The image is unmounted and removed at the end of the module, whatever happened.
"""

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import benchlib as bl
import pytest
from benchlib import RESULTS, SETTINGS

TARGETS = ["pyai", "nginx", "raw"]


INODES = 1 << 20


class Ext4Image:
    """An ext4 file system with a journal in an image file, mounted on a fresh directory."""

    def __init__(self, parent, size):
        self.base = Path(tempfile.mkdtemp(prefix="pyai-bench-ext4j-", dir=parent))
        self.image = self.base / "ext4.img"
        self.mnt = self.base / "mnt"
        self.size = size
        self.mounted = False

    def mount(self):
        self.mnt.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(self.size)
        steps = [
            # -N: a round of small PUTs to nginx stores 400k files on a fast machine, more than
            # the 262k inodes mkfs gives 4 GiB by default
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-N",
                str(INODES),
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                str(self.image),
            ],
            ["mount", "-o", "loop", str(self.image), str(self.mnt)],
        ]
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:2])} failed: {(r.stderr or r.stdout).strip()[:200]}")
        self.mounted = True
        if bl.fs_type(self.mnt) != "ext4":
            raise RuntimeError(f"{self.mnt} is {bl.fs_type(self.mnt)}, not ext4")

    def journaled(self):
        r = subprocess.run(["dumpe2fs", "-h", str(self.image)], capture_output=True, text=True, timeout=60)
        return "has_journal" in r.stdout

    def cleanup(self):
        if self.mounted:
            r = subprocess.run(["umount", str(self.mnt)], capture_output=True, text=True, timeout=120)
            if r.returncode != 0:  # something still holds it: detach now, the kernel finishes later
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True, timeout=120)
            self.mounted = False
        shutil.rmtree(self.base, ignore_errors=True)


def _skip(why):
    RESULTS.note("ext4j", f"ext4j rows skipped: {why}.")
    pytest.skip(why)


@pytest.fixture(scope="module")
def ext4j(bench_env):
    """{"prefix": path, "pyai": service, "nginx": service, "raw": None} on the mounted image."""
    if os.geteuid() != 0:
        _skip("not root (mounting the ext4 image needs root)")
    # room for the large file of a round, the small files and the journal
    size = max(4 * bl.GiB if not SETTINGS.quick else bl.GiB, 3 * SETTINGS.large_size)
    img = Ext4Image(os.environ.get("BENCH_EXT4J_DIR", "/var/tmp"), size)
    atexit.register(img.cleanup)  # in case the module's teardown never runs
    services = {}
    try:
        try:
            img.mount()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            _skip(f"no ext4 image mounted ({exc})")
        if not img.journaled():
            _skip("the image's ext4 has no journal")
        prefix = img.mnt / "archive"
        prefix.mkdir()
        work = img.base / "work"  # logs and nginx's files on the host's disk, not in the image
        services["pyai"] = bl.PyaiService("pyai-c-ext4j", work, prefix, "c")
        services["nginx"] = bl.NginxService("nginx-ext4j", work, prefix, img.mnt / "nginx-body")
        for target, svc in services.items():
            bench_env.services[("ext4j", target)] = svc  # listed in the JSON; stopped at session end at the latest
            svc.start()
        yield {"prefix": prefix, "raw": None, **services}
    finally:
        for svc in services.values():
            svc.stop()
        img.cleanup()


@pytest.fixture(autouse=True)
def emptied(ext4j):
    """Each test starts on an empty image: the files of one target's rounds would fill it for the next."""
    yield
    for directory in (ext4j["prefix"], ext4j["prefix"].parent / "raw-creates"):
        for entry in os.scandir(directory) if directory.exists() else ():
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


@pytest.mark.parametrize("target", TARGETS)
def test_ext4j_small_put(benchmark, bench_env, ext4j, target):
    scenario = "small PUT 30B ext4j"
    if target == "raw":
        bl.raw_creates_rounds(benchmark, scenario, target, ext4j["prefix"].parent / "raw-creates", 30)
        return
    bl.small_rounds(benchmark, scenario, target, ext4j[target], "PUT", 30)


@pytest.mark.parametrize("target", TARGETS)
def test_ext4j_large_put(benchmark, bench_env, ext4j, target):
    bl.large_put_rounds(benchmark, "large PUT ext4j", target, ext4j[target], ext4j["prefix"], bench_env.source)
