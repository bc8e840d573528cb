"""genrec.flow.gate: a few requests find candidates at once, first come first served."""

from __future__ import annotations

import threading
import time

import pytest

from genrec.flow.gate import FairGate


def test_never_more_holders_than_the_limit():
    gate = FairGate(2)
    inside, most = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        with gate:
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.002)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2 and inside == 0 and gate.waiting == 0


def test_waiters_are_let_in_in_arrival_order_and_a_leaver_cannot_jump_the_queue():
    gate = FairGate(1)
    order: list[str] = []
    gate.__enter__()  # held: everyone below queues

    def wait_turn(name: str) -> None:
        with gate:
            order.append(name)

    threads = []
    for name in "abcd":
        t = threading.Thread(target=wait_turn, args=(name,))
        t.start()
        threads.append(t)
        while gate.waiting < len(threads):  # queued before the next one starts
            time.sleep(0.001)
    # The holder leaves and comes straight back: it queues behind a, b, c and d.
    gate.__exit__(None, None, None)
    with gate:
        order.append("holder again")
    for t in threads:
        t.join()
    assert order == ["a", "b", "c", "d", "holder again"]


def test_an_error_inside_still_gives_the_place_back():
    gate = FairGate(1)
    with pytest.raises(RuntimeError), gate:
        raise RuntimeError("retrieval failed")
    with gate:  # would block forever if the place were lost
        assert gate.waiting == 0


def test_a_gate_needs_room_for_one():
    with pytest.raises(ValueError, match="at least 1"):
        FairGate(0)
