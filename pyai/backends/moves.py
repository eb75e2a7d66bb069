"""What PATCH checks before any backend moves a server-side file under an id.

A source must name a file below the archive prefix or a configured patch
root, lexically (it is never resolved here: a backend that opens it component
by component then opens exactly what was checked), must not be an upload's
temporary file, and must be a regular file with no other hard link.
"""

import stat
from typing import List, Optional, Sequence, Tuple

from pyai.backends.base import is_temp_name
from pyai.errors import Forbidden


def components(path: str) -> Optional[List[str]]:
    """The names of an absolute path, read lexically ("." and empty ones dropped);
    None when it is relative or has a ".." (which only resolving could place)."""
    if not path.startswith("/"):
        return None
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return None if ".." in parts else parts


def allowed_source(source: str, roots: Sequence[str]) -> Tuple[str, List[str]]:
    """``(root, components below it)`` of a source PATCH may take, the innermost root
    holding it; else Forbidden."""
    parts = components(source)
    if parts and not is_temp_name(parts[-1]):
        best: Optional[Tuple[str, List[str]]] = None
        for root in roots:
            root_parts = components(root)
            if root_parts is None:
                continue
            if parts[: len(root_parts)] == root_parts and len(parts) > len(root_parts):
                if best is None or len(root_parts) > len(best[1]):
                    best = (root, root_parts)
        if best is not None:
            return best[0], parts[len(best[1]) :]
    raise Forbidden(
        "the source is not under the archive prefix or a configured patch root",
        detail="move: source outside the allowed roots",
    )


def not_regular() -> Forbidden:
    return Forbidden("the source is not a regular file", detail="move: source is not a regular file")


def check_source(mode: int, links: Optional[int] = None) -> None:
    """Forbidden unless the source is a regular file with one link (``links`` None: the storage does not say)."""
    if not stat.S_ISREG(mode):
        raise not_regular()
    if links is not None and links != 1:
        # another name of the same file (perhaps outside the roots) would see it archived and changed
        raise Forbidden("the source has other hard links", detail="move: source has other hard links")
