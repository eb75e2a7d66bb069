"""The directory tree under a backend's prefix: making directories and walking every entry.

Both work on any namespace through its primitives (a one-level mkdir, a
directory listing), so posix and HPSS share one mkdir -p and one traversal:
the same files count as stored, the same names as temporary files, and a
directory or entry that vanishes while it is walked is skipped the same way.
"""

import errno
import os
import posixpath
from typing import Callable, Iterable, Iterator, NamedTuple, Optional

from pyai.backends.base import is_temp_name


class Entry(NamedTuple):
    """One name in a listed directory."""

    path: str
    name: str
    is_dir: bool  # a directory, never a symlink to one
    is_file: bool  # a regular file, never a symlink to one
    mtime: Optional[float] = None  # when the listing learnt it at no extra cost


# Lists one directory: OSError when it cannot be listed; entries that vanish
# while it is being listed are left out (never an error).
Lister = Callable[[str], Iterable[Entry]]


def walk(top: str, list_dir: Lister, *, ordered: bool = False, hidden: bool = True) -> Iterator[Entry]:
    """Every entry below ``top``, depth first; a directory that cannot be listed is skipped.

    ``ordered``: each directory's entries by name (files in descending order,
    subdirectories visited in ascending order), for output people read.
    ``hidden=False`` leaves out dot names (sidecars, temporary files, the
    emulator's state) and everything below them.
    """
    pending = [top]
    while pending:
        try:
            entries = list(list_dir(pending.pop()))
        except OSError:
            continue
        if ordered:
            entries.sort(key=lambda entry: entry.name, reverse=True)
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            if entry.is_dir:
                pending.append(entry.path)
            yield entry


def stored_files(top: str, list_dir: Lister) -> Iterator[str]:
    """The path of every stored file below ``top`` (never temporary files, sidecars or other dot names)."""
    return (entry.path for entry in walk(top, list_dir, ordered=True, hidden=False) if entry.is_file)


def temp_files(top: str, list_dir: Lister) -> Iterator[Entry]:
    """Every regular file below ``top`` with an upload's temporary name (for the sweep)."""
    return (entry for entry in walk(top, list_dir) if entry.is_file and is_temp_name(entry.name))


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


def list_local(directory: str) -> Iterator[Entry]:
    """The Lister of a local (or mounted) file system: one scandir, no stat where d_type tells."""
    with os.scandir(directory) as listing:
        entries = list(listing)
    for entry in entries:
        try:
            is_dir, is_file = entry.is_dir(follow_symlinks=False), entry.is_file(follow_symlinks=False)
        except OSError:  # gone meanwhile (a file system without d_type stats each entry)
            continue
        yield Entry(entry.path, entry.name, is_dir, is_file)
