"""symdl.timeouts.raise_after: the raise arrives after the limit, again if swallowed, and never after
the block has been left (a stray raise once escaped a derivation's clean-up and ended a pytest run)."""

from __future__ import annotations

import threading
import time

import pytest

from symdl.timeouts import raise_after


class Late(BaseException):
    """The exception under test."""


def _swallow_until_done(seconds: float) -> None:
    """Spin for ``seconds`` catching ``Exception``, as SymPy's strategies do (Late passes through)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sum(range(1000))
        except Exception:  # noqa: BLE001 - Late is a BaseException: it passes
            continue


def test_raise_arrives_after_the_limit_and_repeats() -> None:
    start = time.monotonic()
    with pytest.raises(Late), raise_after(Late, 0.2, time.monotonic):
        _swallow_until_done(30)
    assert 0.2 <= time.monotonic() - start < 5


def test_a_swallowed_raise_comes_again() -> None:
    arrivals = 0
    start = time.monotonic()
    with raise_after(Late, 0.1, time.monotonic):
        while arrivals < 3:
            try:
                _swallow_until_done(30)
            except Late:  # swallowed, as SymPy's bare excepts would
                arrivals += 1
    assert arrivals == 3 and time.monotonic() - start < 10


def test_a_block_that_finishes_in_time_sees_no_raise() -> None:
    with raise_after(Late, 5.0, time.monotonic):
        sum(range(1000))


@pytest.mark.parametrize("in_thread", [False, True])
def test_no_raise_escapes_after_the_block_even_when_leaving_races_the_watchdog(in_thread: bool) -> None:
    """Many blocks that time out while their clean-up runs: afterwards, spinning must be undisturbed."""
    escaped: list[BaseException] = []

    def run() -> None:
        for attempt in range(60):
            try:
                with raise_after(Late, 0.001 * (attempt % 5), time.monotonic, poll=0.0005):
                    _swallow_until_done(0.01)
            except Late:
                pass
            try:
                _swallow_until_done(0.02)  # a stray raise would land here
            except BaseException as error:  # noqa: BLE001 - anything at all is the failure
                escaped.append(error)

    if in_thread:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(120)
    else:
        run()
    assert not escaped
