"""Every symbolic attempt stops at its CPU-time limit: in the main thread, in another thread and
in a process-pool worker, and even when the computation swallows ``Exception``."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import sympy as sp

from symdl.proofs.proof import ProofTimeout, bounded, symbolic_zero, time_limit

X, Y = sp.symbols("x y")
#: An identity simplify cannot settle quickly (measured: it runs on far past a second).
HARD = sum((sp.sin(k * X) + sp.cos(k * Y)) ** 3 / (1 + sp.exp(k * X) + sp.tanh(Y)) for k in range(1, 9)) - 1
LIMIT = 0.5
#: CPU time allowed past the limit: the timer's repeat interval plus unwinding SymPy's frames.
SLACK = 0.5


def _hard_attempt() -> tuple[bool, float]:
    """(proven?, CPU seconds this thread spent)."""
    start = time.thread_time()
    proven = symbolic_zero(HARD, LIMIT)
    return proven, time.thread_time() - start


def _swallowing_loop() -> tuple[bool, float]:
    """A computation that catches ``Exception`` and carries on, as SymPy's strategies do."""
    start = time.thread_time()
    _, finished = bounded(_spin_catching_exceptions, LIMIT)
    return finished, time.thread_time() - start


def _spin_catching_exceptions() -> None:
    while True:
        try:
            sum(i * i for i in range(10_000))
        except Exception:  # noqa: BLE001 - the point: a timeout must not be one of these
            continue


@pytest.mark.parametrize("attempt", [_hard_attempt, _swallowing_loop])
def test_limit_holds_in_the_main_thread(attempt) -> None:
    proven, spent = attempt()
    assert not proven and spent < LIMIT + SLACK


@pytest.mark.parametrize("attempt", [_hard_attempt, _swallowing_loop])
def test_limit_holds_in_another_thread(attempt) -> None:
    with ThreadPoolExecutor(1) as pool:
        proven, spent = pool.submit(attempt).result(timeout=120)
    assert not proven and spent < LIMIT + SLACK


@pytest.mark.parametrize("attempt", [_hard_attempt, _swallowing_loop])
def test_limit_holds_in_a_process_pool_worker(attempt) -> None:
    with ProcessPoolExecutor(1) as pool:
        proven, spent = pool.submit(attempt).result(timeout=120)
    assert not proven and spent < LIMIT + SLACK


def test_an_easy_identity_is_still_proven_and_no_timeout_escapes_later() -> None:
    assert symbolic_zero(sp.sin(X) ** 2 + sp.cos(X) ** 2 - 1, LIMIT)
    with time_limit(LIMIT):
        pass
    spent = time.thread_time()
    while time.thread_time() - spent < 2 * LIMIT:  # a late timer or async exception would land here
        pass


def test_timeout_is_not_an_exception_subclass() -> None:
    assert issubclass(ProofTimeout, BaseException) and not issubclass(ProofTimeout, Exception)


def test_a_tick_inside_a_gc_callback_is_not_lost_as_unraisable(monkeypatch) -> None:
    """hypothesis registers a gc callback; a timeout raised inside one is dropped as 'unraisable'.

    With a callback that takes about half the CPU time (as hypothesis's can under a heavy SymPy load),
    ten limits' first ticks all missing it has a chance below 1e-3: the callback must never receive
    the timeout (reported through ``sys.unraisablehook``), and the limit must still fire in the
    computation itself, on time.
    """
    import gc
    import sys

    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def slow_callback(phase: str, info: dict) -> None:
        end = time.process_time() + 0.002
        while time.process_time() < end:
            pass

    gc.callbacks.append(slow_callback)
    try:
        for _ in range(10):
            start = time.process_time()
            with pytest.raises(ProofTimeout), time_limit(0.1):
                while True:
                    end = time.process_time() + 0.004
                    while time.process_time() < end:
                        pass
                    gc.collect(0)  # two callbacks: about half of the time is spent in them
            assert time.process_time() - start < 0.1 + SLACK
    finally:
        gc.callbacks.remove(slow_callback)
    assert unraisable == []
