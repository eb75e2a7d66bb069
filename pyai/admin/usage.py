"""``pacifica-archiveinterface-cmd du``: how many files an archive holds and how many bytes.

It walks what ``pyai.admin.inventory`` lists and adds up each file's size
(``Backend.stored_size``: never staging, never asking a database).  With
``--media`` it asks what HEAD says instead (``Backend.status``; on
hsmsideband one database query per file) and also counts the files and
bytes by media (disk, tape) and the bytes on each storage level.
"""

import json
import sys
from typing import Dict, List, TypedDict

from pyai.admin import inventory
from pyai.admin.progress import Progress
from pyai.errors import ArchiveError, describe


def human(size):
    """``1.5 GB`` (decimal units, as the progress lines)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


class Counts(TypedDict):
    files: int
    bytes: int


class Totals(Counts, total=False):
    """What ``du --json`` prints; ``media`` and ``bytes_per_level`` with ``--media`` only."""

    media: Dict[str, Counts]  # by medium ("disk", "tape")
    bytes_per_level: List[int]


def tally(backend, by_media, progress, err):
    """``(totals, failed)``: the counts document ``du --json`` prints, and how many files could not be counted."""
    totals: Totals = {"files": 0, "bytes": 0}
    if by_media:
        totals["media"] = {}
        totals["bytes_per_level"] = []
    failed = 0
    for item in inventory.stored(backend):
        try:
            if by_media:
                status = backend.status(item.path)
                size = None if status is None else status.size
            else:
                size = backend.stored_size(item.path)
        except (ArchiveError, OSError) as exc:  # e.g. the sideband database is down
            failed += 1
            err.write(f"{item.ident}: cannot be counted: {describe(exc)}\n")
            continue
        if size is None:  # deleted while the walk went on
            continue
        totals["files"] += 1
        totals["bytes"] += size
        if by_media:
            media = totals["media"].setdefault(status.media, {"files": 0, "bytes": 0})
            media["files"] += 1
            media["bytes"] += size
            levels = totals["bytes_per_level"]
            for level, count in enumerate(status.bytes_per_level):
                if level == len(levels):
                    levels.append(0)
                levels[level] += count
        progress.advance(nbytes=size, files=1)
    return totals, failed


def run(archive, by_media=False, as_json=False, out=sys.stdout, err=sys.stderr):
    """Print the totals; return the exit status: 1 when a file could not be counted, else 0."""
    progress = Progress(err, verb="counted")
    totals, failed = tally(archive.backend, by_media, progress, err)
    progress.finish()
    if as_json:
        out.write(json.dumps(totals) + "\n")
    else:
        if by_media:
            for media, count in sorted(totals["media"].items()):
                out.write(f"{media}: {count['files']} file(s), {count['bytes']} bytes ({human(count['bytes'])})\n")
            for level, count in enumerate(totals["bytes_per_level"]):
                out.write(f"level {level}: {count} bytes ({human(count)})\n")
        out.write(f"{totals['files']} file(s), {totals['bytes']} bytes ({human(totals['bytes'])})\n")
    return 1 if failed else 0
