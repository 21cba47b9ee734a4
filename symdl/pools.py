"""A process pool that Ctrl-C stops at once (no SymPy; used by the proof cache and ``symdl verify``).

``with ProcessPoolExecutor() as pool`` waits, on leaving the block, for every job already submitted:
after a Ctrl-C, ``symdl verify`` went on for the rest of its jobs (up to its whole run, ~2 minutes)
before it printed "interrupted". :func:`process_pool` instead cancels the queued jobs and terminates
the workers when the block is left by an exception; their results are lost, which is all an
interrupt asks for (nothing is written by a worker: the proof cache stores results in the parent,
atomically).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor


@contextlib.contextmanager
def process_pool(workers: int | None = None) -> Iterator[ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` of ``workers`` processes (default: one per CPU), stopped at once on an exception."""
    pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count())
    try:
        yield pool
    except BaseException:
        # `_processes` is private, but the executor offers no other handle on its workers; None once shut down.
        workers_left = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers_left:
            process.terminate()
        raise
    pool.shutdown(wait=True)
