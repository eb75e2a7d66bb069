"""The worker's turns: one thread serves at a time, and each stall gives exactly one more thread a turn.

A turn given twice for one stall would never come back (the stalled thread, once
done, waits for a turn again instead of returning one), so the count is checked
whichever way the stall is seen: by the main thread's watch, or by the thread
itself saying it is about to block (``pyai.serving.may_block``).
"""

import threading

from pyai import serving
from pyai.server.worker import STALL, PyaiWorker, _Turn


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
