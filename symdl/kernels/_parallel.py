"""Batch parallelism for the layer kernels: ``set_num_threads``, and the split of a batch into chunks
that run on a thread pool.

NumPy releases the GIL inside its loops and BLAS calls, so threads that each work on a slice
of the batch run on separate cores. The convolutions, max pooling and training-mode batch norm
split their batch this way when there is enough work (:func:`chunks`); each chunk writes its own
rows of the output, and what sums over the batch (a weight gradient, batch statistics) adds the
chunks' partial sums in chunk order.

The split depends on the thread count, so results are deterministic for a given count, and
equal across counts to rounding (as PyTorch's). With one thread, the default, nothing is split
and no thread is started.

Each worker calls BLAS itself, so BLAS should run one thread per call when symdl runs several
(``threadpoolctl.threadpool_limits(1, "blas")``; ``symdl train --threads`` does both): two
workers each asking BLAS for two threads oversubscribe two cores.
"""

from __future__ import annotations

import functools
import numbers
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from symdl.errors import OpParameterError

if TYPE_CHECKING:  # imported when the first pool starts: most processes never split a batch
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["set_num_threads", "get_num_threads", "chunks", "run", "over_chunks"]

Result = TypeVar("Result")

#: The estimated single-thread time (ns) below which a chunk is not worth a thread. Handing a
#: task to the pool costs tens of microseconds, and the threads contend for the GIL between
#: NumPy calls: measured on 2 cores, a convolution's forward plus backward split in two ran
#: 1.3-2x faster from an estimated 1 ms of forward, slower below about 0.9 ms.
MIN_CHUNK_NANOSECONDS = 500_000

_threads = 1
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's pool threads: a task handed to the inherited pool
    would wait forever, so the child starts its own pool when it first splits a batch."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def set_num_threads(threads: int) -> None:
    """Run the layer kernels on ``threads`` threads (``torch.set_num_threads``'s name); 1 (the
    default) splits nothing.

    Raises:
        OpParameterError: ``threads`` is not an int >= 1.
    """
    global _threads, _pool
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise OpParameterError(f"set_num_threads: threads must be an int >= 1, got {threads!r}")
    with _lock:
        if int(threads) != _threads and _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
        _threads = int(threads)


def get_num_threads() -> int:
    """The thread count the layer kernels use (:func:`set_num_threads`)."""
    return _threads


def chunks(batch: int, nanoseconds: int, dtype: np.dtype) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` ranges covering ``range(batch)``: one per thread, but only as
    many as the whole batch's estimated single-thread time (``nanoseconds``) pays for at
    :data:`MIN_CHUNK_NANOSECONDS` each, and at most one per sample. Object arrays (the proofs'
    SymPy expressions) are never split: they hold the GIL."""
    count = min(_threads, batch, nanoseconds // MIN_CHUNK_NANOSECONDS) if dtype != object else 1
    if count <= 1:
        return [(0, batch)]
    bounds = [batch * i // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run(tasks: Sequence[Callable[[], Result]]) -> list[Result]:
    """Each task's result, in order: all but the last on the pool, the last on the calling thread
    (which would otherwise only wait). A task's exception is raised here, after every task ended
    (none is left writing into an array the caller may reuse)."""
    if len(tasks) == 1:
        return [tasks[0]()]
    global _pool
    with _lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=max(_threads - 1, 1), thread_name_prefix="symdl")
        pool = _pool
    futures = [pool.submit(task) for task in tasks[:-1]]
    try:
        last = tasks[-1]()
    finally:
        for future in futures:  # wait for every one, even when the last task raised
            future.exception()
    return [future.result() for future in futures] + [last]


def over_chunks(bounds: Sequence[tuple[int, int]], body: Callable[[int, int], Result]) -> list[Result]:
    """``body(start, stop)`` for each chunk of ``bounds`` (:func:`chunks`), run as :func:`run` runs
    tasks: the results in chunk order."""
    return run([functools.partial(body, start, stop) for start, stop in bounds])
