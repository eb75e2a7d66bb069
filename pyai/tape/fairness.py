"""How the executor's free slots are shared out between clients: round-robin over owners, and
within an owner round-robin over its requests.

First in, first out over every file would let one client's long queue (thousands of files,
each slow to stage) hold another client's one file back for the whole queue.  Shared out, a
client waits for its turn among the clients that are waiting, whatever their queues' lengths.
"""

import collections
import dataclasses
from typing import Counter, Deque, Dict, Iterable, Tuple


@dataclasses.dataclass
class _Waiting:
    """A request in its owner's queue: its files not yet shared out."""

    request_id: str
    files: int


def share_out(waiting: Iterable[Tuple[str, str, int]], slots: int) -> Dict[str, int]:
    """``{request_id: files to claim}`` for ``slots`` free slots.

    ``waiting`` is ``[(request_id, owner, files waiting)]``, oldest request first; owners take
    turns in the order of their oldest request, and each owner's requests take turns among
    themselves.  Never more files for a request than it has waiting.
    """
    queues: collections.OrderedDict[str, Deque[_Waiting]] = collections.OrderedDict()
    for request_id, owner, number in waiting:
        if number > 0:
            queues.setdefault(owner, collections.deque()).append(_Waiting(request_id, number))
    turns = collections.deque(queues)
    shares: Counter[str] = collections.Counter()
    while slots > 0 and turns:
        owner = turns.popleft()
        requests = queues[owner]
        entry = requests.popleft()
        shares[entry.request_id] += 1
        entry.files -= 1
        slots -= 1
        if entry.files:
            requests.append(entry)
        if requests:
            turns.append(owner)
    return dict(shares)
