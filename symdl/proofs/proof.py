"""One bounded prover: is ``lhs == rhs``? Symbolically within a CPU-time limit, else numerically.

A claim is *symbolic* when ``sympy.simplify`` reduces ``lhs - rhs`` to 0 within
:data:`SIMPLIFY_SECONDS` of CPU time, otherwise a *numeric identity*: the largest
relative difference at :data:`PROOF_POINTS` points, evaluated with mpmath at
:data:`PROOF_DIGITS` significant digits, must be below ``10^-(digits - 5)``.

Every symbolic attempt is bounded on every code path (:func:`time_limit`):

* in a process's main thread (the CLI, pytest, every process-pool worker) by a
  POSIX CPU-time interval timer (``ITIMER_VIRTUAL``);
* in any other thread by a watchdog thread that reads the worker thread's own
  CPU clock and raises :class:`ProofTimeout` in it asynchronously.

:class:`ProofTimeout` derives from ``BaseException`` and is raised again every
:data:`REPEAT_SECONDS` until the block exits, because SymPy catches ``Exception``
in many places (``simplify`` tries strategies under ``try/except``): a timeout
that SymPy swallowed once used to leave ``simplify`` running for more than ten
minutes in a pool worker.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType

import mpmath
import sympy as sp

from symdl.functions import to_textbook
from symdl.timeouts import REPEAT_SECONDS, callback_retry_seconds, in_gc_callback, raise_after

#: Digits used by numeric identity proofs and the mpmath reference.
PROOF_DIGITS = 50
#: Points at which a numeric identity is evaluated.
PROOF_POINTS = 40
#: CPU seconds ``simplify`` may spend on one identity before the numeric proof is used.
SIMPLIFY_SECONDS = 2.0


class ProofTimeout(BaseException):
    """Raised inside a time-limited SymPy computation (a ``BaseException``, so ``except Exception``
    inside SymPy cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`ProofTimeout` in the enclosed pure-Python computation after ``seconds`` of CPU time.

    CPU time, not wall time: whether an identity is proven symbolically must not
    depend on how busy the machine is.
    """
    limiter = _signal_limit if threading.current_thread() is threading.main_thread() else _watchdog_limit
    with limiter(seconds):
        yield


@contextlib.contextmanager
def _signal_limit(seconds: float) -> Iterator[None]:
    """The main thread's limit: ``SIGVTALRM`` after ``seconds`` of process CPU time, then repeatedly."""
    active = True

    def _raise(signum: int, frame: FrameType | None) -> None:
        if not active:
            return
        if in_gc_callback(frame):  # raised there, it would be dropped as unraisable: try again soon
            signal.setitimer(signal.ITIMER_VIRTUAL, callback_retry_seconds(), REPEAT_SECONDS)
            return
        raise ProofTimeout

    previous = signal.signal(signal.SIGVTALRM, _raise)
    try:
        signal.setitimer(signal.ITIMER_VIRTUAL, seconds, REPEAT_SECONDS)  # armed inside: the finally disarms
        yield
    finally:
        active = False  # first, and without a call: from here on the handler raises nothing
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def _watchdog_limit(seconds: float) -> contextlib.AbstractContextManager[None]:
    """Another thread's limit: a watchdog reads this thread's CPU clock and raises in it asynchronously."""
    clock_id = time.pthread_getcpuclockid(threading.get_ident())
    return raise_after(ProofTimeout, seconds, lambda: time.clock_gettime(clock_id))


def bounded(compute: Callable[[], object], seconds: float = SIMPLIFY_SECONDS) -> tuple[object, bool]:
    """``(compute(), True)`` if it finishes within ``seconds`` of CPU time, else ``(None, False)``.

    An exception raised by the computation counts as not finishing: SymPy gives up with
    ``RecursionError``, ``ValueError``/``TypeError`` (comparing ``zoo`` inside ``Max``), and with
    ``KeyError``/``PolynomialError`` from deep inside ``solveset`` when ``simplify`` meets a
    piecewise condition in ``sin(x)`` (found by hypothesis). An attempt that fails proves nothing
    either way, so the caller falls back to the numeric check.
    """
    try:
        with time_limit(seconds):
            return compute(), True
    except (ProofTimeout, Exception):  # noqa: BLE001 - see the docstring: any give-up is "not finished"
        return None, False


def symbolic_zero(difference: sp.Expr, seconds: float = SIMPLIFY_SECONDS) -> bool:
    """True when SymPy simplifies ``difference`` to 0 within the time limit."""
    result, finished = bounded(lambda: sp.simplify(difference) == 0, seconds)
    return bool(finished and result)


@dataclass(frozen=True)
class Proof:
    """How one identity ``lhs == rhs`` was established."""

    claim: str
    method: str  # "symbolic", "symbolic (n=2,3,4)", "numeric (50 digits, 40 points)"
    holds: bool
    max_error: float = 0.0  # numeric proofs: the largest relative difference seen


def _mp_function(expr: sp.Expr, symbols: Sequence[sp.Symbol]):  # noqa: ANN202 - lambdified callable
    return sp.lambdify(list(symbols), to_textbook(expr), modules="mpmath")


def numeric_identity(
    lhs: sp.Expr, rhs: sp.Expr, symbols: Sequence[sp.Symbol], points: Sequence[Sequence[float]]
) -> float:
    """Largest relative difference :math:`|a - b| / \\max(|a|, |b|, 1)` of ``lhs`` and ``rhs`` at ``points``
    (50 digits)."""
    f, h = _mp_function(lhs, symbols), _mp_function(rhs, symbols)
    worst = mpmath.mpf(0)
    with mpmath.workdps(PROOF_DIGITS + 10):
        for point in points:
            args = [mpmath.mpf(v) for v in point]
            try:
                a, b = f(*args), h(*args)
            except (TypeError, ValueError, ZeroDivisionError):  # e.g. a max of a complex value: no identity
                return math.inf
            if any(isinstance(v, mpmath.mpc) and v.imag for v in (a, b)):  # complex where the kernels are real
                return math.inf
            if mpmath.isnan(a) or mpmath.isnan(b):  # max() would drop a NaN and call the identity proven
                return math.inf
            scale = max(abs(a), abs(b), mpmath.mpf(1))
            worst = max(worst, abs(a - b) / scale)
    return float(worst)


def prove_identity(
    claim: str,
    lhs: sp.Expr,
    rhs: sp.Expr,
    symbols: Sequence[sp.Symbol],
    points: Sequence[Sequence[float]],
    *,
    symbolic_label: str = "symbolic",
    try_symbolic: bool = True,
) -> Proof:
    """Prove ``lhs == rhs``: symbolically if SymPy can within the limit (unless ``try_symbolic`` is False), else
    numerically."""
    if try_symbolic and symbolic_zero(to_textbook(lhs) - to_textbook(rhs)):
        return Proof(claim, symbolic_label, True)
    error = numeric_identity(lhs, rhs, symbols, points)
    tolerance = 10.0 ** (-(PROOF_DIGITS - 5))
    return Proof(claim, f"numeric ({PROOF_DIGITS} digits, {len(points)} points)", error <= tolerance, error)
