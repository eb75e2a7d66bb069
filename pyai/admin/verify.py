"""``pacifica-archiveinterface-cmd verify``: re-read stored files and compare them with their checksums.

Each file is read through its backend (as GET reads it), hashed once with
every algorithm it has a stored checksum of, and reported on stdout when any
of them does not match (naming which) or it has no checksum.  Progress goes to stderr: a bar redrawn in place on
a terminal, a plain line every few seconds otherwise (logs, cron mail).  ``--all`` walks what
``pyai.admin.inventory`` lists (files an id addresses, never through a symlink).

``--add-missing`` backfills: a file lacking some of the configured checksums
(it came in by PATCH, or from an original deployment) gets them computed in
the same read and kept as a PUT keeps them (``Backend.add_checksums``: the
xattr or sidecar on posix and hsmsideband, the user-defined attributes on
HPSS), so the next ``verify`` compares instead of saying ``NO CHECKSUM``.
"""

import sys

from pyai.admin import inventory
from pyai.admin.progress import Progress
from pyai.archive import checksums
from pyai.errors import ArchiveError, describe

READ_BLOCK = 1 << 20
# What --add-missing keeps for a file of an archive configured with no checksum at all (checksum = none).
FALLBACK_ALGORITHMS = ("sha256",)


class NotKept(Exception):
    """The new checksums of a file could not be kept (why: ``args[0]``)."""


def compute(reader, algorithms, progress):
    """``{algorithm: digest}`` of everything ``reader`` holds, in one pass."""
    return checksums.compute(reader.read, algorithms, progress.advance)


def verify_path(archive, path, progress, add=()):
    """``(outcome, the algorithms that mismatch, the algorithms added)`` for the stored file at
    ``path``; outcome is "ok", "mismatch" or "no checksum".

    ``add``: algorithms to compute and keep when the file lacks them, in the same pass that
    checks the stored ones -- and only when those match: digests of bytes that no longer
    match their stored checksum would bless the damage."""
    reader = archive.backend.open_read(path)
    try:
        stored = reader.checksums()
        missing = [name for name in add if name not in stored]
        if not stored and not missing:
            return "no checksum", [], []
        computed = compute(reader, list(stored) + missing, progress)
        wrong = [name for name in checksums.ALGORITHMS if name in stored and computed[name] != stored[name]]
        if wrong:
            return "mismatch", wrong, []
        if missing:
            try:
                archive.backend.add_checksums(path, reader, {name: computed[name] for name in missing})
            except OSError as exc:  # the bytes were read and match: only the keeping failed
                raise NotKept(describe(exc)) from None
        return "ok", [], missing
    finally:
        reader.close()


def algorithms_to_add(config):
    """What --add-missing gives every file that lacks it: the configured algorithms."""
    return tuple(config.checksums) or FALLBACK_ALGORITHMS


def run(archive, idents, every, out=sys.stdout, err=sys.stderr, add_missing=False):
    """Verify the files of ``idents`` (or of the whole archive with ``every``; named by path);
    with ``add_missing``, also compute and keep the configured checksums each file lacks.
    Return the exit status: 1 when any file mismatches, cannot be read or could not keep
    its new checksums, else 0."""
    if every:
        targets = [(item.path, item.path) for item in inventory.stored(archive.backend)]
    else:
        targets = []
        for ident in idents:
            try:
                targets.append((ident, archive.path(ident)))
            except ArchiveError as exc:
                out.write(f"{ident}: {exc.message}\n")
                return 2
    add = algorithms_to_add(archive.config) if add_missing else ()
    progress = Progress(err, len(targets))
    counts = {"ok": 0, "mismatch": 0, "no checksum": 0, "unreadable": 0, "not kept": 0}
    added = 0
    for name, path in targets:
        wrong, new = [], []
        try:
            outcome, wrong, new = verify_path(archive, path, progress, add)
        except NotKept as exc:
            outcome, why = "not kept", exc.args[0]
        except ArchiveError as exc:
            outcome, why = "unreadable", exc.message
        except OSError as exc:
            outcome, why = "unreadable", describe(exc)  # "<op>: <reason>" when the op is known
        counts[outcome] += 1
        if outcome == "mismatch":
            out.write(f"MISMATCH {name}: the bytes do not match the stored {', '.join(wrong)} checksum\n")
        elif outcome == "no checksum":
            out.write(f"NO CHECKSUM {name}\n")
        elif outcome == "unreadable":
            out.write(f"UNREADABLE {name}: {why}\n")
        elif outcome == "not kept":
            out.write(f"NOT KEPT {name}: the checksums computed could not be kept: {why}\n")
        elif new:
            added += 1
            out.write(f"ADDED {name}: {', '.join(new)}\n")
        out.flush()
        progress.advance(files=1)
    progress.finish()
    out.write(
        f"{len(targets)} file(s): {counts['ok']} ok, {counts['mismatch']} mismatched, "
        f"{counts['no checksum']} without checksum, {counts['unreadable']} unreadable"
        + (f", {added} given missing checksums, {counts['not kept']} not kept\n" if add_missing else "\n")
    )
    return 1 if counts["mismatch"] or counts["unreadable"] or counts["not kept"] else 0
