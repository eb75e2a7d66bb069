"""One stored file described for an operator: what HEAD says, plus its stored digests and locality.

Shared by ``stat ID`` and ``ls --long``: the same fields, read the same way
(``Backend.status``, which never stages, and ``Backend.checksums``), as a
JSON object or as text.  Digests are shown in hex, as sha256sum and
md5sum print them.
"""

import json
import sys
import time

from pyai import errors
from pyai.errors import ArchiveError
from pyai.tape.service import locality


def describe(backend, ident, path):
    """The record of the file at ``path`` (``ident``'s), or None when no file is stored there.
    Raises what the backend raises when it cannot tell (BackendUnavailable, OSError)."""
    status = backend.status(path)
    if status is None:
        return None
    return {
        "id": ident,
        "path": status.path,
        "size": status.size,
        "mtime": status.mtime,
        "ctime": status.ctime,
        "bytes_per_level": list(status.bytes_per_level),
        "media": status.media,
        "locality": locality(status),  # the Tape API's word for it (DISK, TAPE, DISK_AND_TAPE, ...)
        "etag": status.etag,
        "checksums": {name: digest.hex() for name, digest in backend.checksums(path).items()},
    }


def iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def long_line(record):
    """``ls --long``: size, mtime, media, the stored digests' names (``-`` for none), id."""
    digests = ",".join(record["checksums"]) or "-"
    return f"{record['size']:>14} {iso(record['mtime'])} {record['media']:<5} {digests:<20} {record['id']}"


def stat_text(record):
    """``stat ID``: one ``name: value`` line per field."""
    lines = [
        f"id: {record['id']}",
        f"path: {record['path']}",
        f"size: {record['size']}",
        f"mtime: {record['mtime']!r} ({iso(record['mtime'])})",
        f"ctime: {record['ctime']!r} ({iso(record['ctime'])})",
        f"bytes per level: {tuple(record['bytes_per_level'])!r}",
        f"media: {record['media']}",
        f"locality: {record['locality']}",
    ]
    if record["etag"]:
        lines.append(f"etag: {record['etag']}")
    if record["checksums"]:
        lines += [f"{name}: {digest}" for name, digest in record["checksums"].items()]
    else:
        lines.append("checksums: none stored (verify --add-missing computes and keeps them)")
    return "\n".join(lines) + "\n"


def run(archive, ident, as_json=False, out=sys.stdout, err=sys.stderr):
    """``stat ID``; return the exit status: 0 when a file is stored under the id, 1 when none is
    (or the storage cannot tell now), 2 for an invalid id."""
    try:
        path = archive.path(ident)
    except ArchiveError as exc:
        err.write(f"{ident}: {exc.message}\n")
        return 2
    try:
        record = describe(archive.backend, ident, path)
    except ArchiveError as exc:
        err.write(f"{ident}: {exc.message}\n")
        return 1
    except OSError as exc:
        err.write(f"{ident}: {errors.describe(exc)}\n")
        return 1
    if record is None:
        err.write(f"{ident}: no file is stored under this id\n")
        return 1
    out.write(json.dumps(record) + "\n" if as_json else stat_text(record))
    return 0
