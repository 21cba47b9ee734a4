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


def _limits_beside_a_slow_gc_callback() -> list[float]:
    """Ten time limits of 0.1 s over a loop that spends about half its CPU time in a gc callback;
    the CPU seconds each took."""
    import gc

    def slow_callback(phase: str, info: dict) -> None:
        sum(range(200_000))  # about 2 ms of pure Python (no clock reads: those are system time, which the
        # main thread's timer does not count)

    spent = []
    gc.callbacks.append(slow_callback)
    try:
        for _ in range(10):
            start = time.thread_time()
            with pytest.raises(ProofTimeout), time_limit(0.1):
                while True:
                    sum(range(400_000))  # about 4 ms
                    gc.collect(0)  # two callbacks: about half of the time is spent in them
            spent.append(time.thread_time() - start)
    finally:
        gc.callbacks.remove(slow_callback)
    return spent


@pytest.mark.parametrize("where", ["main thread", "another thread"])
def test_a_timeout_never_lands_in_a_gc_callback(where: str, monkeypatch) -> None:
    """hypothesis registers a gc callback; a timeout raised inside one is dropped as 'unraisable' (CI saw
    both: the main thread's signal and another thread's asynchronous raise, which then ran 0.7 s late).

    With a callback that takes about half the CPU time, ten limits all missing it by chance is unlikely
    (below 1e-3): the callback must never receive the timeout (``sys.unraisablehook``), and each limit
    must still fire in the computation itself, on time.
    """
    import sys

    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    if where == "main thread":
        spent = _limits_beside_a_slow_gc_callback()
    else:
        with ThreadPoolExecutor(1) as pool:
            spent = pool.submit(_limits_beside_a_slow_gc_callback).result(timeout=120)
    assert unraisable == []
    assert max(spent) < 0.1 + SLACK
