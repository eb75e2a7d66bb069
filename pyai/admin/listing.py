"""``pacifica-archiveinterface-cmd ls``: the ids an archive holds, one per line.

The ids come from ``pyai.admin.inventory`` (the walk ``verify --all`` takes),
on stdout as they are found; progress on stderr.  ``--long`` adds what HEAD
says (size, mtime, media) and which digests are stored (``pyai.admin.fileinfo``);
``--json`` writes one JSON object per line: ``{"id": ...}``, or with ``--long``
every field ``stat`` shows.
"""

import json
import sys

from pyai.admin import fileinfo, inventory
from pyai.admin.progress import Progress
from pyai.errors import ArchiveError, describe


def run(archive, long=False, as_json=False, out=sys.stdout, err=sys.stderr):
    """List every id; return the exit status: 1 when a file could not be described, else 0."""
    backend = archive.backend
    # a bar redrawn on the terminal the ids go to would mangle them: then only the last line
    progress = Progress(err, verb="listed", counts_bytes=long, live=not (out.isatty() and err.isatty()))
    failed = 0
    for item in inventory.stored(backend):
        if long:
            try:
                record = fileinfo.describe(backend, item.ident, item.path)
            except (ArchiveError, OSError) as exc:  # e.g. the sideband database is down: this file is not described
                record, why = False, describe(exc)
            if record is False:
                failed += 1
                err.write(f"{item.ident}: cannot be described: {why}\n")
                continue
            if record is None:  # deleted while the walk went on
                continue
            out.write((json.dumps(record) if as_json else fileinfo.long_line(record)) + "\n")
            progress.advance(nbytes=record["size"], files=1)
        else:
            out.write((json.dumps({"id": item.ident}) if as_json else item.ident) + "\n")
            progress.advance(files=1)
    out.flush()
    progress.finish()
    return 1 if failed else 0
