"""A hasher that runs on a thread of its own, beside the other hashers of a receive.

md5, the slowest algorithm a PUT keeps by default (about 0.6 GB/s on one core,
against about 1.5 for sha256), would otherwise bound a large upload on fast
storage: hashed on one thread after sha256 and adler32, the three take about
2.5 CPU s/GiB.  ``Beside(hasher)`` has the hasher's ``update``/``digest``:
``update`` copies the bytes (the caller reuses its buffer) and queues them for
the thread, at most DEPTH pieces ahead (memory bounded by DEPTH receive
buffers, and a slow hash slows the receive instead of growing a queue), and
``digest`` waits until the thread has hashed all of them.  The first START
bytes are hashed in line, so a small body never starts a thread.  The thread
ends at ``digest``, or when the object is dropped without it (an upload that
failed).
"""

import queue
import threading
import weakref
from typing import Optional

DEPTH = 4
START = 8 << 20  # bytes hashed in line before the thread starts
_END = None  # what tells the thread to stop


class Beside:
    def __init__(self, hasher):
        self.name = hasher.name
        self.digest_size = hasher.digest_size
        self._hasher = hasher
        self._inline = 0
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        self._finalizer: Optional[weakref.finalize] = None
        self._failed = []  # what the thread's update raised, if anything (never left in the queue's way)

    def update(self, data):
        pieces = self._queue
        if pieces is None:
            size = memoryview(data).nbytes
            if self._inline + size <= START:
                self._hasher.update(data)
                self._inline += size
                return
            pieces = self._start()
        pieces.put(bytes(data))

    def _start(self):
        pieces = self._queue = queue.Queue(DEPTH)
        self._thread = threading.Thread(
            target=_hash, args=(self._hasher, pieces, self._failed), name="hash-beside", daemon=True
        )
        self._thread.start()
        # an upload that fails drops its hashers without asking for a digest: end the thread then
        self._finalizer = weakref.finalize(self, pieces.put, _END)
        return pieces

    def digest(self):
        thread, finalizer, pieces = self._thread, self._finalizer, self._queue
        if thread is not None and finalizer is not None and pieces is not None:
            finalizer.detach()
            pieces.put(_END)
            thread.join()
            self._thread = None
        if self._failed:
            raise self._failed[0]
        return self._hasher.digest()

    def hexdigest(self):
        return self.digest().hex()


def _hash(hasher, pieces, failed):
    while True:
        piece = pieces.get()
        if piece is _END:
            return
        if not failed:
            try:
                hasher.update(piece)  # hashlib releases the GIL on large pieces
            except BaseException as exc:  # noqa: BLE001 - kept for digest(); the queue must keep draining
                failed.append(exc)
