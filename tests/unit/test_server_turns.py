"""The worker's turns: one thread serves at a time, and each stall gives exactly one more thread a turn.

A turn given twice for one stall would never come back (the stalled thread, once
done, waits for a turn again instead of returning one), so the count is checked
whichever way the stall is seen: by the main thread's watch, or by the thread
itself saying it is about to block (``pyai.serving.may_block``).
"""

import select
import socket
import threading

from pyai import serving
from pyai.server.connection import Connection
from pyai.server.worker import BATCH, READ, STALL, PyaiWorker, _Turn


def _worker():
    worker = PyaiWorker.__new__(PyaiWorker)  # only the turns' state: no gunicorn, no sockets
    worker.lock = threading.Lock()
    worker.turns = threading.Semaphore(0)  # the one turn is held by the thread under test
    worker.serving = []
    worker.own_turn = threading.local()
    return worker


def _serving(worker, since):
    turn = worker.own_turn.turn = _Turn()
    turn.since = since
    worker.serving.append(turn)
    return turn


def _turns_given(worker):
    given = 0
    while worker.turns.acquire(blocking=False):
        given += 1
    return given


def test_a_step_is_passed_over_once_it_stalls_and_only_once():
    worker = _worker()
    turn = _serving(worker, since=100.0)
    worker._pass_over_stalled(100.0 + STALL / 2)
    assert _turns_given(worker) == 0
    worker._pass_over_stalled(100.0 + STALL * 2)
    worker._pass_over_stalled(100.0 + STALL * 3)
    worker._pass_on()  # the thread says it blocks too: the turn is already given
    assert turn.passed_over
    assert _turns_given(worker) == 1


def test_a_thread_about_to_block_passes_its_turn_on_through_the_contract():
    worker = _worker()
    turn = _serving(worker, since=100.0)
    serving.on_may_block(worker._pass_on)
    try:
        serving.may_block()
        serving.may_block()
    finally:
        serving.on_may_block(None)
    assert turn.passed_over
    assert _turns_given(worker) == 1
    worker._pass_over_stalled(100.0 + STALL * 10)  # the watch sees it stalled: nothing more to give
    assert _turns_given(worker) == 0


def test_a_thread_waiting_for_events_has_nothing_to_pass_on():
    worker = _worker()
    turn = _serving(worker, since=None)
    worker._pass_on()
    worker._pass_over_stalled(1e9)
    assert not turn.passed_over
    assert _turns_given(worker) == 0


def _polling_worker():
    """The turns' state with a real poller: what a batch of events is taken from and handed back to."""
    worker = _worker()
    worker.poller = select.epoll()
    worker.targets = {}
    worker.accepting = True
    return worker


def _readable_connection(worker):
    """A connection armed in the worker's poller, with a request waiting on it."""
    ours, theirs = socket.socketpair()
    conn = Connection(ours, ("127.0.0.1", 1), ("127.0.0.1", 2), 8192)
    worker._arm(conn, conn.fd, READ)
    theirs.send(b"GET /1 HTTP/1.1\r\n\r\n")
    return conn, theirs


def _polled(worker, turn):
    """One poll's batch into ``turn``, as a serving thread takes it."""
    events = worker.poller.poll(1, BATCH)
    turn.pending.extend(worker.targets[fd] for fd, _ in reversed(events))
    return len(events)


def test_a_passed_over_thread_hands_back_the_events_it_had_not_begun():
    worker = _polling_worker()
    first, _a = _readable_connection(worker)
    second, _b = _readable_connection(worker)
    turn = _serving(worker, since=100.0)
    assert _polled(worker, turn) == 2
    taken = worker._next_target(turn)
    assert taken in (first, second) and not taken.armed
    assert worker.poller.poll(0) == []  # one-shot: the other waits in this thread's batch
    worker._pass_over_stalled(100.0 + STALL * 2)  # the step on ``taken`` stalls
    assert turn.pending == []
    left = second if taken is first else first
    assert worker.poller.poll(0) == [(left.fd, select.EPOLLIN)]  # the next thread's poll finds it
    assert worker._next_target(turn) is None  # the stalled thread, once done, starts nothing more


def test_a_connection_closed_or_taken_after_the_poll_is_skipped_in_the_batch():
    worker = _polling_worker()
    closed, _a = _readable_connection(worker)
    expired, _b = _readable_connection(worker)
    served, _c = _readable_connection(worker)
    turn = _serving(worker, since=None)
    assert _polled(worker, turn) == 3
    closed.armed = False  # as _close leaves it
    assert worker._take(expired)  # the main thread took it for its deadline
    assert worker._next_target(turn) is served
    assert worker._next_target(turn) is None
