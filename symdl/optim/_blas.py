"""``y <- y + a x`` in one pass: BLAS's axpy, for the optimizer kernels' in-place updates.

NumPy writes ``y += a * x`` as two passes over memory (the product into a
buffer, then the add); torch's ``y.add_(x, alpha=a)`` is one. SciPy's BLAS
wrappers (``saxpy``/``daxpy``, loaded on first use: importing scipy.linalg costs
tens of milliseconds) do it in one, writing into ``y`` itself when ``y`` is
contiguous and of BLAS's type. The generated kernels call it where an update has that
form (``param -= lr * d``). Measured 2026-12-07, one thread, against NumPy's two passes
into a scratch buffer: 1.5x (65536 float32) and 1.65x (32768 float64) faster on the
optimizers' cache-sized blocks, 1.1x (float32) and 2.3x (float64) on 1e6 elements; a
call whose length is not a multiple of 64 pays about 2 us for its padded tail (1000
float32 values: 3.7 us, NumPy's passes 1.8).

The value of an element must not depend on where it sits (a parameter updated alone or packed with others,
whole or block by block, contiguous or transposed ends bit for bit in the same place), and OpenBLAS's axpy
does not round every element alike: its vector body fuses the multiply and the add, its scalar tail (the last
``n mod 16`` elements of a call) may not, and above 10,000 elements it splits the call between threads, each
part with a tail of its own (measured with SciPy 1.17.1's OpenBLAS 0.3.30: 1-ulp differences between a packed
and a per-parameter Adam step, and between a 100,000-element saxpy on one thread and on two). So calls go in
one call where SciPy's OpenBLAS runs on one thread (``symdl train``, the benchmarks), else in pieces of
:data:`PIECE` elements (one thread each, a multiple of every kernel's unroll, starting at multiples of it
from the array's start), and the last ``n mod 64`` elements through the vector body too, padded to 64 in
scratch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["axpy", "load"]

_ROUTINES: dict[np.dtype, Callable[..., Any]] = {}

#: Elements per BLAS call: at most OpenBLAS's one-thread size (10,000), a multiple of :data:`WIDTH`.
PIECE = 8192
#: A multiple of every OpenBLAS axpy kernel's unroll (16 or 32 elements): the padded tail's length.
WIDTH = 64


def _unknown_threads() -> int | None:
    """No thread count known: several threads are assumed."""
    return None


#: How many threads SciPy's BLAS runs now (None: unknown): threadpoolctl's query, set by :func:`load`.
_threads_now: Callable[[], int | None] = _unknown_threads


def load() -> None:
    """Load SciPy's BLAS now. A thread limit (threadpoolctl) covers only the libraries loaded when
    it is set, so whoever limits BLAS threads calls this first (``symdl train``, the benchmarks)."""
    global _threads_now
    if not _ROUTINES:
        from scipy.linalg import blas

        _ROUTINES.update({np.dtype(np.float32): blas.saxpy, np.dtype(np.float64): blas.daxpy})
        _threads_now = _thread_count()


def _thread_count() -> Callable[[], int | None]:
    """A function answering how many threads SciPy's own OpenBLAS runs now (threadpoolctl's query, 0.5 us:
    a thread limit may change between calls), or None where that library is not found (then several are
    assumed). SciPy's wheels ship it in ``scipy.libs``, apart from NumPy's."""
    import scipy
    from threadpoolctl import ThreadpoolController

    home = Path(scipy.__file__).resolve().parent
    own = [lib for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers
           if Path(lib.filepath).resolve().parent in (home.parent / "scipy.libs", home)]
    return own[0].get_num_threads if len(own) == 1 else _unknown_threads


def _flat(array: np.ndarray) -> np.ndarray:
    """A 1-D C-contiguous view of ``array`` (a copy only when it is strided)."""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array if array.ndim == 1 else array.reshape(-1)


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    r""":math:`y \leftarrow y + a x`, in place on ``y`` (``a`` a real scalar, ``x`` like ``y``).

    The BLAS pass may fuse the multiply and the add (one rounding instead of two, as torch's
    ``add_`` may), so every float32/float64 call goes through it, strided arrays through
    contiguous copies: the result must not depend on the layout (a transposed parameter
    ends where a contiguous one does, bit for bit). Other dtypes: NumPy's ``y += a * x``.
    """
    if not _ROUTINES:
        load()
    routine = _ROUTINES.get(y.dtype)  # this runs per parameter per step: the usual case is tested first
    if routine is None or x.dtype != y.dtype or x.shape != y.shape or not y.size:
        y += a * x
        return
    y_flags = y.flags
    if y_flags.c_contiguous and y_flags.writeable and x.flags.c_contiguous:
        if y.ndim != 1:
            x, y = x.reshape(-1), y.reshape(-1)  # views: BLAS writes into y's own memory
        _in_pieces(routine, a, x, y)
        return
    updated = np.ascontiguousarray(y)
    _in_pieces(routine, a, _flat(x), updated.reshape(-1))
    y[...] = updated  # (a read-only y raises here, as NumPy's in-place ops do)


def _in_pieces(routine: Callable[..., Any], a: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += a x`` for 1-D contiguous ``x`` and ``y``: up to the last multiple of :data:`WIDTH` in one call on
    one thread or pieces of :data:`PIECE` elements, then the last few elements padded to :data:`WIDTH` in
    scratch, so that every element goes through BLAS's vector body on one thread (module docstring).
    Arguments positional (n, a): f2py parses keywords at twice the cost of the call."""
    n = y.size
    body = n - n % WIDTH
    if body <= PIECE or _threads_now() == 1:  # one thread: one call
        if body:
            routine(x, y, body, a)
    else:
        for start in range(0, body, PIECE):  # BLAS's offsets (offx, incx, offy, incy): no view per piece
            routine(x, y, min(PIECE, body - start), a, start, 1, start, 1)
    if body < n:
        tail_x, tail_y = _tail(y.dtype)  # what the padding holds does not matter: it is computed and dropped
        tail_x[:n - body], tail_y[:n - body] = x[body:], y[body:]
        routine(tail_x, tail_y, WIDTH, a)
        y[body:] = tail_y[:n - body]


_SCRATCH = threading.local()


def _tail(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Two scratch vectors of :data:`WIDTH` elements of ``dtype``, this thread's own (another thread's axpy may
    run between this one's copies)."""
    tails = _SCRATCH.__dict__.setdefault("tails", {})
    pair = tails.get(dtype)
    if pair is None:
        pair = tails[dtype] = (np.zeros(WIDTH, dtype), np.zeros(WIDTH, dtype))
    return pair
