"""A wall-clock bound on a whole graph or matrix derivation (``symdl derive --graph/--shape --timeout``).

The engines check a cooperative deadline between their steps (:func:`check`), and :func:`within` adds a
watchdog (:func:`symdl.timeouts.raise_after`) that raises :class:`OverBudget` in the working thread once
the time is up, so that one long SymPy call cannot hang the command either. The watchdog does not use
signals: SymPy simplifications inside run under :func:`symdl.proofs.proof.time_limit`, which owns
``SIGVTALRM`` in the main thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from symdl.errors import SymdlError
from symdl.timeouts import raise_after

__all__ = ["OverBudget", "TimeoutRefused", "within", "check", "remaining"]

_local = threading.local()


class OverBudget(BaseException):
    """Raised in the working thread when the time is up (a ``BaseException``: SymPy's ``except Exception``
    cannot swallow it)."""


class TimeoutRefused(SymdlError, TimeoutError):
    """A derivation that did not finish within ``--timeout`` (the CLI prints one line, exit 2)."""


def remaining() -> float | None:
    """Seconds left in the innermost :func:`within` block of this thread (None: unbounded)."""
    deadline = getattr(_local, "deadline", None)
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def check() -> None:
    """Raise :class:`OverBudget` when the current block's time is up (the cooperative check)."""
    left = remaining()
    if left is not None and left <= 0:
        raise OverBudget


@contextlib.contextmanager
def within(seconds: float | None, what: str = "the derivation") -> Iterator[None]:
    """Run the block within ``seconds`` of wall-clock time, else raise :class:`TimeoutRefused` naming ``what``.

    ``None`` runs unbounded. Nested blocks keep the earlier deadline.
    """
    if seconds is None:
        yield
        return
    outer = getattr(_local, "deadline", None)
    deadline = time.monotonic() + seconds
    _local.deadline = deadline if outer is None else min(outer, deadline)
    timed_out = False
    try:
        with raise_after(OverBudget, _local.deadline - time.monotonic(), time.monotonic):
            try:
                yield
            except OverBudget:
                timed_out = True  # (no call here: the watchdog's next raise is stopped on the way out)
    except OverBudget:  # a repeat that landed while leaving the inner block
        timed_out = True
    finally:
        _local.deadline = outer
    if timed_out:
        raise TimeoutRefused(f"refused: {what} did not finish within {seconds:g} s; raise --timeout or "
                             f"derive a smaller piece")
