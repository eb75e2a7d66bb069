"""Progress of a long walk over an archive, on stderr: files (and bytes) done so far.

A bar redrawn in place on a terminal; a plain line every PLAIN_EVERY seconds
otherwise (logs, cron mail), and one at the end.  ``verify``, ``ls`` and
``du`` draw theirs with it.
"""

import time

PLAIN_EVERY = 10.0  # seconds between progress lines when stderr is not a terminal
BAR_EVERY = 0.2


class Progress:
    """Files and bytes done so far, drawn on ``stream``."""

    def __init__(self, stream, total_files=None, verb="verified", counts_bytes=True, live=True):
        self.stream = stream
        self.live = live  # False: only the last line (the listing itself goes to the same terminal)
        self.verb = verb  # what the line says was done to the files so far
        self.counts_bytes = counts_bytes
        self.tty = stream.isatty()
        self.total = total_files
        self.files = 0
        self.bytes = 0
        self.started = self.drawn = time.monotonic()

    def advance(self, nbytes=0, files=0):
        self.bytes += nbytes
        self.files += files
        now = time.monotonic()
        if self.live and now - self.drawn >= (BAR_EVERY if self.tty else PLAIN_EVERY):
            self.drawn = now
            self._draw(now)

    def _line(self, now):
        rate = self.bytes / max(now - self.started, 1e-6) / 1e6
        done = f"{self.files}/{self.total}" if self.total is not None else f"{self.files}"
        if not self.counts_bytes:
            return f"{self.verb} {done} files"
        return f"{self.verb} {done} files, {self.bytes / 1e6:.1f} MB, {rate:.0f} MB/s"

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
