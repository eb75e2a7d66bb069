"""``pacifica-archiveinterface-cmd verify``: re-read stored files and compare them with their checksums.

Each file is read through its backend (as GET reads it), hashed once with
every algorithm it has a stored checksum of, and reported on stdout when any
of them does not match (naming which) or it has no checksum.  Progress goes to stderr: a bar redrawn in place on
a terminal, a plain line every few seconds otherwise (logs, cron mail).
"""

import sys
import time

from pyai.archive import checksums
from pyai.errors import ArchiveError, describe

READ_BLOCK = 1 << 20
PLAIN_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal
BAR_EVERY = 0.2


class Progress:
    """Files and bytes done so far, drawn on ``stream``."""

    def __init__(self, stream, total_files=None):
        self.stream = stream
        self.tty = stream.isatty()
        self.total = total_files
        self.files = 0
        self.bytes = 0
        self.started = self.drawn = time.monotonic()

    def advance(self, nbytes=0, files=0):
        self.bytes += nbytes
        self.files += files
        now = time.monotonic()
        if now - self.drawn >= (BAR_EVERY if self.tty else PLAIN_EVERY):
            self.drawn = now
            self._draw(now)

    def _line(self, now):
        rate = self.bytes / max(now - self.started, 1e-6) / 1e6
        done = f"{self.files}/{self.total}" if self.total is not None else f"{self.files}"
        return f"verified {done} files, {self.bytes / 1e6:.1f} MB, {rate:.0f} MB/s"

    def _draw(self, now):
        if self.tty:
            bar = ""
            if self.total:
                filled = int(30 * self.files / self.total)
                bar = "[" + "#" * filled + " " * (30 - filled) + "] "
            self.stream.write("\r" + bar + self._line(now) + "\033[K")
        else:
            self.stream.write(self._line(now) + "\n")
        self.stream.flush()

    def finish(self):
        now = time.monotonic()
        self._draw(now)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


def compute(reader, algorithms, progress):
    """``{algorithm: digest}`` of everything ``reader`` holds, in one pass."""
    return checksums.compute(reader.read, algorithms, progress.advance)


def verify_path(archive, path, progress):
    """``("ok" | "mismatch" | "no checksum", the algorithms that mismatch)`` for the stored file at ``path``."""
    reader = archive.backend.open_read(path)
    try:
        stored = reader.checksums()
        if not stored:
            return "no checksum", []
        computed = compute(reader, list(stored), progress)
        wrong = [name for name in checksums.ALGORITHMS if name in stored and computed[name] != stored[name]]
        return ("mismatch" if wrong else "ok"), wrong
    finally:
        reader.close()


def run(archive, idents, every, out=sys.stdout, err=sys.stderr):
    """Verify the files of ``idents`` (or of the whole archive with ``every``);
    return the exit status: 1 when any file mismatches or cannot be read, else 0."""
    if every:
        targets = [(path, path) for path in archive.backend.stored_paths()]
    else:
        targets = []
        for ident in idents:
            try:
                targets.append((ident, archive.path(ident)))
            except ArchiveError as exc:
                out.write(f"{ident}: {exc.message}\n")
                return 2
    progress = Progress(err, len(targets))
    counts = {"ok": 0, "mismatch": 0, "no checksum": 0, "unreadable": 0}
    for name, path in targets:
        wrong = []
        try:
            outcome, wrong = verify_path(archive, path, progress)
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
        out.flush()
        progress.advance(files=1)
    progress.finish()
    out.write(
        f"{len(targets)} file(s): {counts['ok']} ok, {counts['mismatch']} mismatched, "
        f"{counts['no checksum']} without checksum, {counts['unreadable']} unreadable\n"
    )
    return 1 if counts["mismatch"] or counts["unreadable"] else 0
