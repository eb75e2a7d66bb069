"""The drain flag: whether this instance's master has begun to stop.

The master raises it on TERM (``pyai.server.lifecycle``); every worker's
``/readyz`` reads it (``pyai.ops.health``) and says 503 at once.  It lives here,
below both, so health needs nothing of the server.
"""

import mmap

# Created when the master imports this module (with pyai.server.lifecycle), before it forks
# any worker: the workers share the page, so a drain the master begins is seen by all of them.
_FLAG = mmap.mmap(-1, 1)


def begin() -> None:
    """Raise the flag (the master, on the first TERM)."""
    _FLAG[0] = 1


def draining() -> bool:
    """Whether this instance's master has begun to stop (a worker's /readyz says 503)."""
    return _FLAG[0] == 1
