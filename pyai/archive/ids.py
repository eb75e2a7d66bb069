"""Archive ids: what a valid id is, and where its file lives.

Two id schemes exist, as in the original service.  Safe names (the default for
the posix backend) are stored as ``<prefix>/<id>``; integer ids are stored at
``id2filename(id)``, a layout existing archives depend on byte for byte.
Neither scheme can name a file that starts with ``.``, which is where the
archive keeps its temporary files.

Under ``[archive] namespace = paths`` an id may also be a path of safe names
(``scope/ab/cd/name``), each segment under the safe-name rule, so no segment is
``..``, starts with ``.`` or holds a ``/``; the file lives at that path below
the prefix, and every level above it is a collection (a directory).
"""

import re

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
INTEGER = re.compile(r"[0-9]{1,19}")
MAX_ID = 2**63 - 1
# A path of at most this many segments and characters: deeper than any grid layout
# (Rucio's is 4), and well inside PATH_MAX with a long prefix in front.
MAX_DEPTH = 32
MAX_PATH = 2048


class InvalidId(ValueError):
    """The text is not an id under the archive's scheme."""


def parse_safe_name(text: str) -> str:
    """Return ``text`` if it is a safe file name, else raise InvalidId."""
    if not SAFE_NAME.fullmatch(text):
        raise InvalidId("an id is 1-255 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit")
    return text


def parse_path(text: str) -> str:
    """Return ``text`` if it is a path of safe names (``a/b/c``, at least one), else raise InvalidId."""
    if len(text) > MAX_PATH:
        raise InvalidId(f"a path is at most {MAX_PATH} characters")
    segments = text.split("/")
    if len(segments) > MAX_DEPTH:
        raise InvalidId(f"a path has at most {MAX_DEPTH} segments")
    for segment in segments:
        if not SAFE_NAME.fullmatch(segment):
            raise InvalidId(
                "each segment of a path is 1-255 ASCII letters, digits, '.', '_' or '-', starting with a letter"
                " or digit"
            )
    return text


def parse_integer(text: str) -> int:
    """Return the integer id written in ``text`` (ASCII digits, at most 2**63-1)."""
    if not INTEGER.fullmatch(text) or int(text) > MAX_ID:
        raise InvalidId(f"an id is an integer from 0 to {MAX_ID}")
    return int(text)


def id2filename(fileid: int) -> str:
    """Map an integer id to its path below the prefix (the original layout).

    The file name is the id in lowercase hex; while more than two hex digits
    remain, the last two are peeled off as the next directory level.  Ids of at
    most two hex digits become ``/file.<hex>``.
    """
    hexid = format(fileid, "x")
    if len(hexid) <= 2:
        return "/file." + hexid
    levels = []
    rest = hexid
    while len(rest) > 2:
        levels.append(rest[-2:])
        rest = rest[:-2]
    return "/" + "/".join(levels) + "/" + hexid


def filename2id(path: str) -> int:
    """Inverse of ``id2filename``; raises InvalidId for a path it cannot produce."""
    parts = path.split("/")
    if not path.startswith("/") or len(parts) < 2:
        raise InvalidId(f"not an archive path: {path!r}")
    name = parts[-1]
    if len(parts) == 2 and name.startswith("file."):
        hexid = name[5:]
        if 1 <= len(hexid) <= 2 and _is_hex(hexid) and id2filename(int(hexid, 16)) == path:
            return int(hexid, 16)
        raise InvalidId(f"not an archive path: {path!r}")
    if _is_hex(name) and len(name) > 2 and int(name, 16) <= MAX_ID and id2filename(int(name, 16)) == path:
        return int(name, 16)
    raise InvalidId(f"not an archive path: {path!r}")


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)
