"""Interrupt a pure-Python computation in this thread after a time limit (no SymPy; usable anywhere).

:func:`raise_after` starts a watchdog thread that, once ``clock()`` has advanced by ``seconds``,
raises an exception in the working thread asynchronously (``PyThreadState_SetAsyncExc``, delivered at
the interpreter's next check point), and raises it again every :data:`REPEAT_SECONDS` until the block
exits: code that swallows it once (SymPy catches ``Exception`` in many places; the exception to raise
should be a ``BaseException``) cannot keep running. No signals are used, so it nests with a signal
timer and works in any thread. A raise is never sent while the thread stands in a garbage-collector
callback, a weak-reference callback or a ``__del__`` (:func:`in_gc_callback`), where Python would drop it;
it is tried again a few milliseconds later (a random delay, :func:`callback_retry_seconds`).

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
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import FrameType

#: After the limit, how often the exception is raised again while the block has not exited.
REPEAT_SECONDS = 0.05
#: The shortest wait (x 2) before a raise is tried again when the thread stood in a callback.
GC_RETRY_SECONDS = 0.001

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)


def _nested_codes(*functions: Callable[..., object]) -> frozenset[object]:
    """The code objects of the functions defined inside ``functions`` (closures such as WeakSet's ``_remove``)."""
    return frozenset(c for f in functions for c in f.__code__.co_consts if hasattr(c, "co_name"))


#: Code the interpreter runs as a weak-reference callback, where a raised exception is unraisable too: the
#: weak containers' removal closures and ``weakref.finalize``'s call (SymPy's caches and hypothesis use them).
_WEAKREF_CALLBACK_CODES = _nested_codes(weakref.WeakSet.__init__, weakref.WeakKeyDictionary.__init__,
                                        weakref.WeakValueDictionary.__init__) | {weakref.finalize.__call__.__code__}


def in_gc_callback(frame: FrameType | None) -> bool:
    """Whether code interrupted at ``frame`` runs inside a callback the interpreter calls on its own: a
    garbage-collector callback (hypothesis registers one), a weak-reference callback or a ``__del__``. An
    exception raised there cannot propagate; Python reports it as unraisable and drops it."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks} | _WEAKREF_CALLBACK_CODES
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


#: Draws the retry delays (its own generator: a caller's seeded ``random`` state is left alone).
_JITTER = random.Random()


def callback_retry_seconds() -> float:
    """How long to wait before trying a raise again after finding the thread in a callback: random, from half
    of :data:`GC_RETRY_SECONDS` to that plus one GIL switch interval. A fixed delay can phase-lock with a loop
    whose period is the delay plus the switch interval (measured: a loop of 4 ms of work and a 2 ms ``__del__``
    was found inside the ``__del__`` at 526 of 536 tries, and its 0.1 s limit fired up to 2.9 s late)."""
    return _JITTER.uniform(GC_RETRY_SECONDS / 2, GC_RETRY_SECONDS / 2 + sys.getswitchinterval())


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
                    time.sleep(callback_retry_seconds())
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
