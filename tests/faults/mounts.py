"""File systems the fault tests mount themselves (as root): a small tmpfs that fills
up or turns read-only, and an ext4 on a loop device that can be shut down (EIO).

Each skips the test with the reason when it cannot be had (not root, a kernel or
container that refuses the mount, a missing tool) instead of failing.
"""

import contextlib
import fcntl
import os
import shutil
import subprocess
import time

import pytest

# ioctl(EXT4_IOC_SHUTDOWN) = _IOR('X', 125, __u32): the file system stops, every
# later open, read and write on it fails with EIO until it is unmounted (what
# xfstests use to stand in for a dead disk).  Flag 2: do not flush the journal.
EXT4_IOC_SHUTDOWN = 0x8004587D
EXT4_GOING_FLAGS_NOLOGFLUSH = 2


def _run(*command):
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _require(*tools):
    if os.geteuid() != 0:
        pytest.skip("needs root: the test mounts its own file system")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (e2fsprogs / util-linux)")


def _mount_or_skip(what, *command):
    proc = _run("mount", *command)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount {what}: {proc.stderr.strip() or proc.returncode}")


def unmount(path):
    """Unmount, retrying while a process that is being stopped still uses it; lazily as a last resort."""
    for _ in range(50):
        if _run("umount", str(path)).returncode == 0 or not os.path.ismount(path):
            return
        time.sleep(0.1)
    _run("umount", "-l", str(path))


def remount(path, mode):
    """Remount ``path`` read-only ("ro") or read-write ("rw")."""
    proc = _run("mount", "-o", f"remount,{mode}", str(path))
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def tmpfs(path, size="8m"):
    """A tmpfs of ``size`` mounted on ``path`` for the duration."""
    _require("mount", "umount")
    path.mkdir(parents=True, exist_ok=True)
    _mount_or_skip(f"a {size} tmpfs", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield path
    finally:
        unmount(path)


class Ext4OnLoop:
    """An ext4 image on a loop device, mounted on ``mountpoint``; ``shutdown()`` makes it fail with EIO."""

    def __init__(self, image, mountpoint, size_mib=32):
        self.image = image
        self.mountpoint = mountpoint
        self.size_mib = size_mib
        self.device = None

    def __enter__(self):
        _require("mount", "umount", "losetup", "mkfs.ext4")
        with open(self.image, "wb") as handle:
            handle.truncate(self.size_mib << 20)
        proc = _run("mkfs.ext4", "-q", "-F", str(self.image))
        if proc.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {proc.stderr.strip()}")
        proc = _run("losetup", "--find", "--show", str(self.image))
        if proc.returncode != 0:
            pytest.skip(f"no loop device: {proc.stderr.strip()}")
        self.device = proc.stdout.strip()
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        try:
            self.mount()
        except BaseException:
            self._detach()
            raise
        return self

    def mount(self):
        _mount_or_skip(f"ext4 on {self.device}", "-t", "ext4", self.device, str(self.mountpoint))

    def shutdown(self):
        """Stop the file system as a dead disk would: from now on it answers EIO."""
        fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, EXT4_GOING_FLAGS_NOLOGFLUSH.to_bytes(4, "little"))
        except OSError as exc:
            pytest.skip(f"the kernel refuses EXT4_IOC_SHUTDOWN: {exc}")
        finally:
            os.close(fd)

    def _detach(self):
        if self.device:
            _run("losetup", "-d", self.device)
            self.device = None

    def __exit__(self, *exc_info):
        unmount(self.mountpoint)
        self._detach()

    def restart(self):
        """Unmount the stopped file system and mount it again: the disk is back."""
        unmount(self.mountpoint)
        self.mount()
