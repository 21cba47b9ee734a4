"""One proof cache: proofs are pure functions of their inputs' source, so they are derived once.

A proof is stored under ``SYMDL_CACHE`` (default ``~/.cache/symdl``) as a pickle named by a
key that hashes everything the proof depends on (symdl's and SymPy's versions, the prover's
and the catalog's source, the entry itself): a change to any of them is a new key, never a
stale proof. Files are written atomically (:mod:`symdl.files`), so a killed run leaves the
old file or the new one; a file that cannot be read is derived again. A read-only cache only
costs speed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import sympy as sp

import symdl
from symdl.files import write_binary_atomically
from symdl.pools import process_pool

Item = TypeVar("Item", bound=Hashable)
Result = TypeVar("Result")


def cache_dir() -> Path:
    """Where proofs are kept: ``$SYMDL_CACHE`` or ``~/.cache/symdl``."""
    return Path(os.environ.get("SYMDL_CACHE", Path.home() / ".cache" / "symdl"))


def source_key(files: Iterable[Path], *parts: str) -> str:
    """A short hash of symdl's and SymPy's versions, the text of ``files`` and ``parts``."""
    text = "|".join([symdl.__version__, sp.__version__, *(Path(f).read_text(encoding="utf-8") for f in files), *parts])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(name: str) -> object | None:
    """The cached value called ``name``, or None (absent or unreadable)."""
    try:
        return pickle.loads((cache_dir() / f"{name}.pkl").read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError):
        return None


def store(name: str, value: object) -> None:
    """Keep ``value`` as ``name`` (atomically; nothing happens when the cache is not writable)."""
    try:
        write_binary_atomically(cache_dir() / f"{name}.pkl", lambda handle: handle.write(pickle.dumps(value)))
    except OSError:
        pass


def cached_map(compute: Callable[[Item], Result], items: Sequence[Item], key: Callable[[Item], str], *,
               use_cache: bool = True, workers: int | None = None, cost: Callable[[Item], float] | None = None,
               on_done: Callable[[], None] = lambda: None) -> dict[Item, Result]:
    """``{item: compute(item)}``, from the cache where present, the rest computed and stored.

    The missing items are computed in a process pool of ``workers`` processes (default: one per
    core; ``0``: here, in this process, as a pool worker does), the costliest first when ``cost``
    is given. ``on_done`` is called once per item.
    """
    results: dict[Item, Result] = {}
    missing: list[Item] = []
    for item in items:
        cached = load(key(item)) if use_cache else None
        if cached is None:
            missing.append(item)
        else:
            results[item] = cached  # type: ignore[assignment]
            on_done()
    if cost is not None:
        missing.sort(key=lambda item: -cost(item))

    def keep(item: Item, value: Result) -> None:
        results[item] = value
        store(key(item), value)
        on_done()

    if workers == 0 or len(missing) <= 1:
        for item in missing:
            keep(item, compute(item))
    elif missing:
        with process_pool(workers) as pool:
            for item, value in zip(missing, pool.map(compute, missing)):
                keep(item, value)
    return {item: results[item] for item in items}
