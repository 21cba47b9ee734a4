#!/usr/bin/env python
"""Where packing small parameters pays: Adam steps over many parameters, packed or one by one.

``symdl.optim`` updates a group's parameters of at most ``PACK_BYTES`` bytes together, by one
kernel call over flat arrays (:mod:`symdl.optim.packing`). This script times Adam (float32 and
float64) over 16 parameters of equal size, for sizes around that threshold, three ways in the
same rounds:

* ``alone``: one kernel call per parameter (packing off);
* ``gathered``: separate arrays, packed (gradients and parameters gathered, parameters
  scattered back every step);
* ``in place``: the parameters are consecutive views of one buffer (as after
  ``nn.Module.flatten_parameters``), packed without copying them.

Each round times every way once (``time.perf_counter``, enough steps for ~20 ms); the table
gives the median microseconds per step and the ratios to ``alone`` (median of per-round
ratios; below 1: packing is faster). Packing should win below ``PACK_BYTES`` per parameter.

Usage::

    python scripts/bench_packing.py [--repeats 15] [--markdown docs/bench_packing.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

import symdl.optim as optim
import symdl.optim.packing as packing
from symdl.optim._blas import load as load_blas
from timing import paired_ratio, write_table  # scripts/timing.py, next to this file

PARAMETERS = 16
KIB = (1, 4, 16, 32, 64, 256)  # bytes per parameter, in KiB


def _optimizer(dtype: type, size: int, way: str) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(size).astype(dtype) for _ in range(PARAMETERS)]
    if way == "in place":
        flat = np.concatenate(arrays)
        arrays = [flat[i * size:(i + 1) * size] for i in range(PARAMETERS)]
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(PARAMETERS)]
    threshold = packing.PACK_BYTES
    packing.PACK_BYTES = 0 if way == "alone" else 1 << 40  # read when the optimizer first steps
    optimizer = optim.Adam(arrays, lr=1e-3)
    optimizer.step(grads)
    packing.PACK_BYTES = threshold
    return lambda: optimizer.step(grads)


def _time(step: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        step()
    return (time.perf_counter() - start) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    load_blas()
    ways = ("alone", "gathered", "in place")
    rows = []
    with threadpool_limits(1):
        for dtype in (np.float32, np.float64):
            for kib in KIB:
                size = kib * 1024 // np.dtype(dtype).itemsize
                steps = {way: _optimizer(dtype, size, way) for way in ways}
                count = max(1, int(0.02 / (_time(steps["alone"], 3) * 1e-6)))
                times: dict[str, list[float]] = {way: [] for way in ways}
                for _ in range(args.repeats):
                    for way in ways:
                        times[way].append(_time(steps[way], count))
                rows.append((np.dtype(dtype).name, kib, *(statistics.median(times[w]) for w in ways),
                             paired_ratio(times["gathered"], times["alone"]),
                             paired_ratio(times["in place"], times["alone"])))
                print(*rows[-1], flush=True)
    lines = [f"Adam over {PARAMETERS} parameters of equal size, 1 BLAS thread; {platform.machine()}, "
             f"Python {platform.python_version()}, NumPy {np.__version__}; PACK_BYTES = {packing.PACK_BYTES // 1024} "
             f"KiB; median of {args.repeats} rounds.", "",
             "| dtype | KiB per parameter | alone us | gathered us | in place us | gathered / alone "
             "| in place / alone |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {d} | {k} | {a:.1f} | {g:.1f} | {i:.1f} | {rg:.2f} | {ri:.2f} |" for d, k, a, g, i, rg, ri in rows]
    print("\n".join(lines))
    if args.markdown:
        write_table(args.markdown, "# Packing benchmark (`python scripts/bench_packing.py`)\n\n"
                         + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
