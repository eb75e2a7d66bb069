"""The digests of one body, computed beside whatever gives the bytes: each lane of
digests on a thread of its own.

Each digest is sequential, so a large PUT keeping several (sha256, adler32 and
md5 by default) can go no faster than one core computes the slowest of them,
md5 (about 0.75 GB/s).  It reaches that only when nothing else waits for md5
and md5 waits for nothing: ``Beside`` copies the bytes given to ``update``
once, into slabs of SLAB bytes (the caller reuses its buffer: the chunked
decoder's; the tee reader instead reads its pipe straight into the slab,
``fill``), and hands each full slab to every lane; each lane's thread hashes
it with its digests (hashlib and pyai's adler32 release the GIL on pieces
this large) and the slab is reused once every lane is done with it.
At most SLABS slabs exist: a lane that falls that far behind slows the
receive instead of growing memory, and until then the receive never waits for
a digest.  ``pyai.archive.checksums.lanes`` splits the digests into lanes:
one each when there are cores for them, else the slowest alone and the rest
shared.

The first START bytes are hashed in line, so a small body never starts a
thread; a single lane is always hashed in line (a thread would only add the
copy).  ``digests`` flushes the last slab and waits for the lanes; the threads
end then, or when the object is dropped without it (an upload that failed).
"""

import os
import queue
import threading
import weakref
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from pyai.archive.checksums import Hasher

SLAB = 1 << 20  # bytes handed to the lanes at a time: few wake-ups, and it stays in cache
SLABS = 8  # slabs one body may hold: how far a lane may fall behind the receive
START = 8 << 20  # bytes hashed in line before the lanes start
_END = None  # what tells a lane's thread to stop


class _Slab:
    __slots__ = ("buffer", "view", "size", "pending")

    def __init__(self) -> None:
        self.buffer = bytearray(SLAB)
        self.view = memoryview(self.buffer)
        self.size = 0  # bytes filled
        self.pending = 0  # lanes that have not hashed it yet


class Beside:
    """``update(data)`` and ``digests()`` for the hashers ``{name: hasher}``, each lane
    (a sequence of names) on a thread of its own once the bytes are many."""

    def __init__(self, hashers: Mapping[str, "Hasher"], lanes: Sequence[Sequence[str]]) -> None:
        self._hashers = dict(hashers)
        self._lanes = [tuple(self._hashers[name] for name in lane) for lane in lanes if lane]
        self._inline = 0 if len(self._lanes) > 1 else -1  # -1: always in line
        self._queues: Optional[List["queue.SimpleQueue[Optional[_Slab]]"]] = None
        self._threads: List[threading.Thread] = []
        self._finalizer: Optional[weakref.finalize] = None
        self._free: "queue.SimpleQueue[_Slab]" = queue.SimpleQueue()
        self._made = 0  # slabs allocated so far (at most SLABS)
        self._slab: Optional[_Slab] = None  # the slab being filled
        self._lock = threading.Lock()  # guards each slab's ``pending``
        self._failed: List[BaseException] = []  # what a lane's update raised, if anything (the lanes keep draining)
        self._scratch: Optional[memoryview] = None  # what ``fill`` reads into while hashing in line

    def as_hashers(self) -> Tuple["Beside", ...]:
        """What the receive loops take as their hashers (they call ``update`` of each): this, or nothing to hash."""
        return (self,) if self._hashers else ()

    def update(self, data: "ReadableBuffer") -> None:
        if self._queues is None:
            size = memoryview(data).nbytes
            if self._inline < 0 or self._inline + size <= START:
                for hasher in self._hashers.values():
                    hasher.update(data)
                if self._inline >= 0:
                    self._inline += size
                return
            self._start()
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        while view:
            slab = self._slab
            if slab is None:
                slab = self._slab = self._take()
            take = min(SLAB - slab.size, len(view))
            slab.buffer[slab.size : slab.size + take] = view[:take]
            slab.size += take
            view = view[take:]
            if slab.size == SLAB:
                self._send(slab)

    def fill(self, fd: int) -> int:
        """``update`` with what the pipe ``fd`` holds (at most SLAB bytes), read straight into
        the slab the lanes hash next once they run (no copy between); 0 at the pipe's end."""
        if self._queues is None and (self._inline < 0 or self._inline + SLAB <= START):
            if self._scratch is None:
                self._scratch = memoryview(bytearray(SLAB))
            n = os.readv(fd, [self._scratch])
            self.update(self._scratch[:n])
            return n
        if self._queues is None:
            self._start()
        slab = self._slab
        if slab is None:
            slab = self._slab = self._take()
        n = os.readv(fd, [slab.view[slab.size :]])
        slab.size += n
        if slab.size == SLAB:
            self._send(slab)
        return n

    def digests(self) -> Dict[str, bytes]:
        """``{name: digest}`` of every byte given: waits for the lanes (their threads end here)."""
        queues, finalizer = self._queues, self._finalizer
        if queues is not None and finalizer is not None and finalizer.alive:
            if self._slab is not None and self._slab.size:
                self._send(self._slab)
            finalizer.detach()
            for pieces in queues:
                pieces.put(_END)
            for thread in self._threads:
                thread.join()
            # the slabs go now, not whenever the request that held this object is collected
            self._free, self._slab, self._made = queue.SimpleQueue(), None, 0
        if self._failed:
            raise self._failed[0]
        return {name: hasher.digest() for name, hasher in self._hashers.items()}

    def _take(self) -> _Slab:
        if self._made < SLABS:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                self._made += 1
                return _Slab()
        return self._free.get()  # every slab is still with a lane: wait for one

    def _send(self, slab: _Slab) -> None:
        self._slab = None
        slab.pending = len(self._lanes)
        for pieces in self._queues or ():
            pieces.put(slab)

    def _start(self) -> None:
        self._queues = [queue.SimpleQueue() for _ in self._lanes]
        for lane, pieces in zip(self._lanes, self._queues):
            thread = threading.Thread(
                target=_hash,
                args=(lane, pieces, self._free, self._lock, self._failed),
                name="hash-beside",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        # an upload that fails drops its digests without asking for them: end the threads then
        self._finalizer = weakref.finalize(self, _stop, self._queues)


def _stop(queues: List["queue.SimpleQueue[Optional[_Slab]]"]) -> None:
    for pieces in queues:
        pieces.put(_END)


def _hash(
    hashers: Tuple["Hasher", ...],
    pieces: "queue.SimpleQueue[Optional[_Slab]]",
    free: "queue.SimpleQueue[_Slab]",
    lock: threading.Lock,
    failed: List[BaseException],
) -> None:
    while True:
        slab = pieces.get()
        if slab is _END:
            return
        if not failed:
            try:
                for hasher in hashers:
                    hasher.update(slab.view[: slab.size])
            except BaseException as exc:  # noqa: BLE001 - kept for digests(); the slabs must keep coming back
                failed.append(exc)
        with lock:
            slab.pending -= 1
            last = slab.pending == 0
        if last:
            slab.size = 0
            free.put(slab)
