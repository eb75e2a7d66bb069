"""How many connections each worker of a master holds, so the least loaded accepts the next one.

Every worker polls the same listener, and kept-alive connections stay where
they were accepted: when a burst of them lands mostly on one worker, that
worker does all their work while the other idles, for as long as they last
(measured: 8 wrk connections split 8/0, 2/6 or 4/4 between two workers from
one run to the next, and the throughput with them).  So each worker writes
its count into a page the master shares with all of them, and a worker that
holds more than one more than the least loaded other one stops listening,
and looks again every ``DELAY``: the next connections go to workers with
fewer.  It listens again once it is no longer loaded, or after ``PATIENCE``
whatever the counts say, so a stale count (or a worker too busy to accept)
can slow an accept by at most that, never stop one.
"""

import mmap
from typing import Optional

SLOTS = 64  # workers with the same age modulo this share a slot (pyai runs a few per core)
DELAY = 0.002  # a loaded worker looks at the counts again this often
PATIENCE = 0.02  # and listens again after this long, whatever they say
SLACK = 1  # a worker is loaded when it holds more than this many connections above the fewest
_UNUSED = -1

# Created when the master imports this module (gunicorn_conf does), before it forks any
# worker: the workers share the page.  Imported first in a worker, it is that worker's alone.
_PAGE = mmap.mmap(-1, SLOTS * 8)
_COUNTS = memoryview(_PAGE).cast("q")
for _slot in range(SLOTS):
    _COUNTS[_slot] = _UNUSED


def slot_of(age: int) -> int:
    """The slot of the worker of ``age`` (gunicorn's per-worker sequence number)."""
    return age % SLOTS


def hold(slot: int, count: int) -> None:
    """The worker of ``slot`` holds ``count`` connections now."""
    _COUNTS[slot] = count


def release(age: int) -> None:
    """The worker of ``age`` ended (in the master): it is no one to compare with."""
    _COUNTS[slot_of(age)] = _UNUSED


def loaded(slot: int, count: int) -> bool:
    """Whether a worker with ``count`` connections holds more than SLACK above the least loaded other one."""
    fewest: Optional[int] = None
    for other, held in enumerate(_COUNTS):
        if other != slot and held != _UNUSED and (fewest is None or held < fewest):
            fewest = held
    return fewest is not None and count > fewest + SLACK
