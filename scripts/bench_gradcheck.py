#!/usr/bin/env python
"""Time symdl's gradient checker against a naive loop and torch.autograd.gradcheck.

What is compared
    The function of the issue, ``f(x) = sum(softplus(W x))`` with ``W`` of
    shape (64, n) and ``x`` of n elements, checked with respect to ``x``
    (n Jacobian entries) against its correct gradient ``W^T sigmoid(W x)``,
    in float64, for n = 100, 1,000 and 10,000:

    * ``symdl full``: ``gradcheck(f, x, grad, mode="full")``, the whole
      gradient by central differences, perturbations evaluated in blocks
      through a leading batch axis (f is written to broadcast: ``x @ W.T``);
    * ``symdl fast``: ``mode="fast"``, three random projections;
    * ``naive loop``: one perturbed copy of ``x`` per element and side, f called
      on each (2n calls), compared with the gradient: what a hand-written
      checker does;
    * ``torch default`` / ``torch fast``: ``torch.autograd.gradcheck`` on the
      same function in torch (float64, ``fast_mode=False`` / ``True``), when
      torch is installed.

    Every checker must report the gradient correct (a failure is shown in the
    table). BLAS and torch run single-threaded (``--threads``, via
    threadpoolctl and ``torch.set_num_threads``) so that the 2 shared cores do
    not turn thread contention into noise.

Method
    For ``--repeats`` rounds (fewer at n = 10,000, where one naive or torch run
    takes seconds), every method runs once per round, in an order rotated
    each round; ``time.perf_counter``, garbage collector off. The table shows
    medians and the ratios torch default / symdl full, naive / symdl full and
    torch fast / symdl fast (above 1: symdl is faster). Targets: symdl full
    >= 10x faster than torch default at n = 1,000 and >= 2x at n = 10,000;
    symdl fast under 5 ms at n = 10,000.

Usage::

    python scripts/bench_gradcheck.py [--repeats 7] [--sizes 100,1000,10000] [--threads 1]
                                      [--markdown docs/bench_gradcheck.md]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from symdl.check import gradcheck
from timing import write_table  # scripts/timing.py, next to this file

OUTPUTS = 64
METHODS = ("symdl full", "symdl fast", "naive loop", "torch default", "torch fast")


def problem(n: int) -> tuple[np.ndarray, np.ndarray]:
    """W (64, n) scaled so that W x is O(1), and x, from a fixed seed."""
    rng = np.random.default_rng(n)
    return rng.standard_normal((OUTPUTS, n)) / np.sqrt(n), rng.standard_normal(n)


def numpy_methods(w: np.ndarray, x: np.ndarray) -> dict[str, Callable[[], bool]]:
    wt = np.ascontiguousarray(w.T)  # x @ wt: one GEMM for a whole block of perturbed copies

    def f(x: np.ndarray) -> np.ndarray:
        return np.sum(np.logaddexp(0.0, x @ wt), axis=-1)

    def grad(x: np.ndarray) -> np.ndarray:
        return wt @ (1.0 / (1.0 + np.exp(-(x @ wt))))

    def naive() -> bool:
        h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(np.abs(x), 1.0)
        numeric = np.empty_like(x)
        for j in range(x.size):
            plus, minus = x.copy(), x.copy()
            plus[j] += h[j]
            minus[j] -= h[j]
            numeric[j] = (f(plus) - f(minus)) / (plus[j] - minus[j])
        return bool(np.allclose(grad(x), numeric, rtol=1e-6, atol=1e-8))

    return {"symdl full": lambda: gradcheck(f, x, grad, mode="full").passed,
            "symdl fast": lambda: gradcheck(f, x, grad, mode="fast").passed,
            "naive loop": naive}


def torch_methods(w: np.ndarray, x: np.ndarray) -> dict[str, Callable[[], bool]]:
    try:
        import torch
    except ImportError:
        return {}
    wt = torch.tensor(np.ascontiguousarray(w.T))
    xt = torch.tensor(x, requires_grad=True)

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(x @ wt).sum()

    return {"torch default": lambda: bool(torch.autograd.gradcheck(f, (xt,))),
            "torch fast": lambda: bool(torch.autograd.gradcheck(f, (xt,), fast_mode=True))}


def measure(methods: dict[str, Callable[[], bool]], repeats: int) -> dict[str, tuple[float, bool]]:
    """Median seconds and verdict per method, order rotated every round."""
    names = list(methods)
    times: dict[str, list[float]] = {name: [] for name in names}
    verdicts: dict[str, bool] = {name: methods[name]() for name in names}  # warm-up, and the verdict
    for round_ in range(repeats):
        order = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in order:
            gc.disable()
            start = time.perf_counter()
            verdicts[name] &= methods[name]()
            times[name].append(time.perf_counter() - start)
            gc.enable()
    return {name: (statistics.median(times[name]), verdicts[name]) for name in names}


def environment(threads: int) -> str:
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    try:
        import torch

        versions.append(f"torch {torch.__version__}")
    except ImportError:
        versions.append("torch not installed")
    cpu = platform.processor() or platform.machine()
    import os

    return (f"{cpu}, {os.cpu_count()} cores (shared), {threads} BLAS/torch thread(s); {', '.join(versions)}; "
            f"{_dt.date.today().isoformat()}")


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.1f}x"


def table(results: dict[int, dict[str, tuple[float, bool]]]) -> list[list[str]]:
    rows = [["n", *(f"{m} (ms)" for m in METHODS), "torch default / symdl full", "naive / symdl full",
             "torch fast / symdl fast"]]
    for n, found in results.items():
        def cell(m: str) -> str:
            if m not in found:
                return "-"
            seconds, ok = found[m]
            return f"{seconds * 1e3:.1f}" + ("" if ok else " (WRONG VERDICT)")

        time_of = {m: found[m][0] if m in found else None for m in METHODS}
        rows.append([f"{n:,}", *(cell(m) for m in METHODS), ratio(time_of["torch default"], time_of["symdl full"]),
                     ratio(time_of["naive loop"], time_of["symdl full"]), ratio(time_of["torch fast"], time_of["symdl fast"])])
    return rows


def targets(results: dict[int, dict[str, tuple[float, bool]]]) -> list[str]:
    """The issue's targets, where this run measured them: met or not."""
    lines = []

    def speedup(n: int) -> float | None:
        found = results.get(n, {})
        if "torch default" not in found or "symdl full" not in found:
            return None
        return found["torch default"][0] / found["symdl full"][0]

    for n, goal in ((1_000, 10.0), (10_000, 2.0)):
        value = speedup(n)
        if value is not None:
            lines.append(f"symdl full >= {goal:.0f}x faster than torch default at n = {n:,}: "
                         f"{value:.1f}x, {'met' if value >= goal else 'NOT met'}")
    fast = results.get(10_000, {}).get("symdl fast")
    if fast is not None:
        lines.append(f"symdl fast under 5 ms at n = 10,000: {fast[0] * 1e3:.1f} ms, "
                     f"{'met' if fast[0] < 5e-3 else 'NOT met'}")
    return lines


def markdown(rows: list[list[str]], header: str, goals: list[str]) -> str:
    lines = ["# gradcheck benchmark", "", "Generated by `python scripts/bench_gradcheck.py --markdown docs/bench_gradcheck.md`;",
             "method in the script's docstring.", "", header, "",
             "f(x) = sum(softplus(W x)), W of shape (64, n), checked with respect to x (n Jacobian entries), float64. "
             "Times are medians in milliseconds.", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines += [""] + [f"* {goal}" for goal in goals]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this path (atomically)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    results = {}
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for n in (int(s) for s in args.sizes.split(",")):
            w, x = problem(n)
            methods = {**numpy_methods(w, x), **torch_methods(w, x)}
            results[n] = measure(methods, args.repeats if n < 10_000 else max(3, args.repeats // 2))
            print(f"n = {n:,}: " + ", ".join(f"{m} {t * 1e3:.1f} ms{'' if ok else ' WRONG'}"
                                              for m, (t, ok) in results[n].items()), flush=True)
    rows = table(results)
    header = environment(args.threads)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    goals = targets(results)
    print(header)
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print("\n".join(goals))
    if args.markdown:
        write_table(args.markdown, markdown(rows, header, goals))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
