"""What an archive holds, by id: the one walk behind ``ls``, ``du`` and ``verify --all``.

The backend walks its tree (``Backend.stored_paths``: never a symlink, never
a dot name, so never the state directory ``.pyai-state``, a temporary upload
or a checksum sidecar); this keeps only the files an id can address, by
asking the backend which path each candidate id has and keeping the file
when that is its path.  So a file an operator left in a safe-name archive's
subdirectory, or a name that is no id under ``use_id2filename``, is not
listed: no request could reach it.
"""

from typing import Iterator, NamedTuple, Optional

from pyai.archive.ids import InvalidId, filename2id


class Stored(NamedTuple):
    ident: str
    path: str  # the backend's path of the file


def ident_of(backend, path: str) -> Optional[str]:
    """The id whose file is ``path``, or None when no id addresses it."""
    prefix = backend.prefix
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix) :].lstrip("/")
    candidates = [relative]  # a safe name
    try:
        candidates.append(str(filename2id("/" + relative)))  # the id2filename layout
    except InvalidId:
        pass
    for candidate in candidates:
        try:
            if backend.path_for(candidate) == path:
                return candidate
        except InvalidId:
            continue
    return None


def stored(backend) -> Iterator[Stored]:
    """Every stored file an id addresses, in the walk's order (by name, depth first)."""
    for path in backend.stored_paths():
        ident = ident_of(backend, path)
        if ident is not None:
            yield Stored(ident, path)
