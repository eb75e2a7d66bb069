"""Group commit of directory fsyncs: shared, but never before a caller's rename."""

import threading
import time

from pyai.backends.dirsync import DirectorySyncer


class RecordingFsync:
    """A stand-in fsync that records when each call starts and ends (it is what is counted)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = 0
        self.ended = []  # indexes of finished fsyncs, in order
        self.paths = []

    def __call__(self, path):
        with self.lock:
            index = self.started
            self.started += 1
            self.paths.append(path)
        time.sleep(0.02)  # long enough for other callers to queue up behind it
        with self.lock:
            self.ended.append(index)


def run_callers(syncer, fsync, directories):
    barrier = threading.Barrier(len(directories))
    failures = []

    def caller(directory):
        barrier.wait()
        with fsync.lock:  # "my rename has finished": fsyncs from here on cover it
            first_useful = fsync.started
        syncer.synced(directory)
        with fsync.lock:
            if not any(index >= first_useful for index in fsync.ended):
                failures.append(directory)

    threads = [threading.Thread(target=caller, args=(d,)) for d in directories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_every_caller_returns_after_an_fsync_that_started_after_its_rename():
    fsync = RecordingFsync()
    failures = run_callers(DirectorySyncer(fsync), fsync, ["/d"] * 16)
    assert failures == []
    assert 1 <= fsync.started < 16  # callers that queued together shared an fsync


def test_directories_are_synced_separately():
    fsync = RecordingFsync()
    failures = run_callers(DirectorySyncer(fsync), fsync, ["/a", "/b"] * 4)
    assert failures == []
    assert set(fsync.paths) == {"/a", "/b"}


def test_a_lone_caller_always_gets_its_own_fsync():
    fsync = RecordingFsync()
    syncer = DirectorySyncer(fsync)
    for _ in range(3):
        syncer.synced("/d")
    assert fsync.started == 3
    assert syncer._dirs == {}  # nothing kept once nobody waits
