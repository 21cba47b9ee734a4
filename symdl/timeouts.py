"""Interrupt a pure-Python computation in this thread after a time limit (no SymPy; usable anywhere).

:func:`raise_after` starts a watchdog thread that, once ``clock()`` has advanced by ``seconds``,
raises an exception in the working thread asynchronously (``PyThreadState_SetAsyncExc``, delivered at
the interpreter's next check point), and raises it again every :data:`REPEAT_SECONDS` until the block
exits: code that swallows it once (SymPy catches ``Exception`` in many places; the exception to raise
should be a ``BaseException``) cannot keep running. No signals are used, so it nests with a signal
timer and works in any thread. A raise is never sent while the thread stands in a garbage-collector
callback (:func:`in_gc_callback`), where Python would drop it; it is tried again a millisecond later.

Leaving the block is the delicate part: the watchdog may raise while the block is being left, even
inside the clean-up. The clean-up therefore tells the watchdog to stop, waits until it has stopped,
then drops a raise not yet delivered, retrying when a raise lands in the middle; once it has run, no
raise can reach the thread any more. It uses no lock in this thread (a raise delivered between a
lock's acquire and release would leave the lock held).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

#: After the limit, how often the exception is raised again while the block has not exited.
REPEAT_SECONDS = 0.05
#: How soon a raise is tried again when the thread was interrupted inside a garbage-collector callback.
GC_RETRY_SECONDS = 0.001

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)


def in_gc_callback(frame: FrameType | None) -> bool:
    """Whether code interrupted at ``frame`` runs inside a garbage-collector callback (hypothesis registers
    one): an exception raised there cannot propagate, Python reports it as unraisable and drops it."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None and callbacks:
        if frame.f_code in callbacks:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def raise_after(exception: type[BaseException], seconds: float, clock: Callable[[], float],
                poll: float = REPEAT_SECONDS) -> Iterator[None]:
    """Raise ``exception`` in this thread once ``clock()`` has advanced by ``seconds`` (then repeatedly).

    Args:
        exception: the class to raise (a ``BaseException`` subclass, so ``except Exception`` passes it on).
        seconds: the limit, in the units of ``clock``.
        clock: wall time (``time.monotonic``) or this thread's CPU time, read from the watchdog thread
            (e.g. ``lambda: time.clock_gettime(time.pthread_getcpuclockid(ident))``).
        poll: how often the watchdog reads ``clock``.
    """
    ident = threading.get_ident()
    deadline = clock() + seconds
    # Plain list cells, not locks or Events: a raise delivered inside a lock's acquire/release in this
    # thread could leave the lock held, and the clean-up would then wait for it forever.
    armed, stop, stopped = [False], [False], [False]

    def watch() -> None:
        while not stop[0]:
            if armed[0] and clock() >= deadline:  # armed: never raise before this thread is in the try
                # The thread resumes where it let go of the interpreter, and the raise lands there: not
                # inside a gc callback, where Python would drop it as unraisable.
                if in_gc_callback(sys._current_frames().get(ident)):
                    time.sleep(GC_RETRY_SECONDS)
                    continue
                _set_async_exc(ident, exception)
                time.sleep(REPEAT_SECONDS)
            else:
                time.sleep(min(poll, max(deadline - clock(), 0.0)))
        stopped[0] = True  # from here on the watchdog raises nothing

    watchdog = threading.Thread(target=watch, name="symdl-watchdog", daemon=True)
    try:
        watchdog.start()
        armed[0] = True
        yield
    finally:
        stop[0] = True  # first, and without a call
        # Inline, not a function call: a call is where a pending raise is delivered, and one delivered
        # before the loop's try would skip the clean-up. A raise landing inside is caught and retried.
        while True:
            try:
                while armed[0] and not stopped[0]:
                    time.sleep(0.0005)
                _set_async_exc(ident, ctypes.py_object())  # NULL: drop a raise not yet delivered
                break
            except exception:
                continue
