"""mkdir -p over any namespace, durably: below the configuration (which makes the archive
prefix with it) and the backends (``pyai.backends.tree``: each makes its directories with it)."""

import errno
import posixpath
from typing import Callable, Optional


def make_dirs(
    directory: str,
    mkdir: Callable[[str], None],
    *,
    root: Optional[str] = None,
    root_exists: Optional[Callable[[str], bool]] = None,
    sync_dir: Optional[Callable[[str], None]] = None,
) -> None:
    """mkdir -p with ``mkdir`` (one level; FileExistsError and FileNotFoundError as os.mkdir raises them).

    With ``root``, nothing at or above it is ever made: when it is missing (a
    volume not mounted, a directory moved away; asked with ``root_exists``)
    FileNotFoundError says so, instead of a fresh empty archive appearing in
    its place.

    With ``sync_dir``, whoever makes a level, or finds it made (another thread
    may have won the mkdir and not synced the parent yet), syncs the parent
    before going on, so every level's entry is durable when this returns.
    """
    if root is not None and len(directory) <= len(root):
        if root_exists is not None and root_exists(directory):
            return
        raise FileNotFoundError(errno.ENOENT, "the archive directory is missing")
    try:
        mkdir(directory)
    except FileExistsError:
        pass
    except FileNotFoundError:
        make_dirs(posixpath.dirname(directory), mkdir, root=root, root_exists=root_exists, sync_dir=sync_dir)
        try:
            mkdir(directory)
        except FileExistsError:
            pass
    if sync_dir is not None:
        sync_dir(posixpath.dirname(directory))
