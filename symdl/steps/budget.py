"""A wall-clock bound on a whole graph or matrix derivation (``symdl derive --graph/--shape --timeout``).

The engines check a cooperative deadline between their steps (:func:`check`), and :func:`within` adds a
watchdog: a thread that, once the time is up, raises :class:`OverBudget` in the working thread
asynchronously (``PyThreadState_SetAsyncExc``), so that one long SymPy call cannot hang the command either.
The watchdog does not use signals: SymPy simplifications inside run under
:func:`symdl.proofs.proof.time_limit`, which owns ``SIGVTALRM``, and nesting two such timers would cancel
the outer one.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator

from symdl.errors import SymdlError

__all__ = ["OverBudget", "TimeoutRefused", "within", "check", "remaining"]

#: After the deadline, how often the watchdog raises again while the block has not exited.
REPEAT_SECONDS = 0.05

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
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
    ident = threading.get_ident()
    done = threading.Event()
    lock = threading.Lock()
    until = _local.deadline  # the watchdog's thread has its own thread-local state: pass the deadline in

    def watch() -> None:
        wait = max(0.0, until - time.monotonic())
        while not done.wait(wait):
            with lock:
                if not done.is_set():
                    _set_async_exc(ident, OverBudget)
            wait = REPEAT_SECONDS

    watchdog = threading.Thread(target=watch, name="symdl-derive-watchdog", daemon=True)
    watchdog.start()
    try:
        yield
    except OverBudget:
        raise TimeoutRefused(f"refused: {what} did not finish within {seconds:g} s; raise --timeout or "
                             f"derive a smaller piece") from None
    finally:
        with lock:
            done.set()
            _set_async_exc(ident, ctypes.py_object())  # NULL: drop a raise not yet delivered
        watchdog.join()
        _local.deadline = outer
