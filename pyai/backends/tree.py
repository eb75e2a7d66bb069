"""The directory tree under a backend's prefix: making directories and walking every entry.

Both work on any namespace through its primitives (a one-level mkdir, a
directory listing), so posix and HPSS share one mkdir -p (``make_dirs``, from
``pyai.dirs``, where the configuration makes the prefix with it too) and one traversal:
the same files count as stored, the same names as temporary files, and a
directory or entry that vanishes while it is walked is skipped the same way.
"""

import os
from typing import Callable, Iterable, Iterator, NamedTuple, Optional

from pyai.backends.base import Member, is_temp_name
from pyai.dirs import make_dirs as make_dirs  # tree.make_dirs: the backends' mkdir -p


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


def first_members(candidates: Iterable[Optional[Member]], limit: int) -> Iterator[Member]:
    """The members among ``candidates`` (None: a name that is no member), at most ``limit`` + 1:
    one past the limit tells the listing it is over (see PathBackend.members)."""
    count = 0
    for member in candidates:
        if member is None:
            continue
        count += 1
        yield member
        if count > limit:
            return
