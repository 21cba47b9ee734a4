#!/usr/bin/env python
"""Time symdl's layer kernels against hand-written NumPy and torch.nn.functional.

What is compared
    For each case in :data:`CASES` and for float32 and float64: the forward plus the full
    backward (every gradient the layer has) of ``symdl.kernels.<layer>`` and ``<layer>_vjp``
    against

    * a careful hand-written NumPy version in this file, written independently of
      symdl's runtime: convolution as im2col in the (N*Ho*Wo, C*kh*kw) row layout
      (``sliding_window_view``, one copy, one matmul), col2im as a loop over the kernel
      offsets; 2x2/stride-2 pooling by reshaping into (.., 2, .., 2) blocks; batch norm
      by the three-term formula. Its backward gets what symdl's does: the forward's column
      matrix and arg-max (below), otherwise only the inputs (it recomputes the batch statistics);
    * ``torch.nn.functional`` (when torch is installed) with autograd, at 1 and 2 threads.

    symdl's max-pool and conv2d backward use the documented mechanisms: the forward's
    ``return_indices=True`` indices, passed to ``max_pool2d_vjp(indices=...)``, and its
    ``return_columns=True`` columns, passed to ``conv2d_vjp(columns=...)``.

Threads
    At a thread count T, each implementation uses T threads its own way: torch through
    ``torch.set_num_threads(T)``; the hand-written NumPy version through its BLAS
    (OpenBLAS here, limited to T by ``threadpoolctl``); symdl through
    ``symdl.kernels.set_num_threads(T)``, which splits large batches over T threads, each
    calling BLAS on one thread (BLAS limited to 1 when T > 1: T workers each asking BLAS for
    T threads would oversubscribe the cores). Each implementation's limits are set before its
    untimed call, outside the timed one.

Method
    Inputs are built once per case and dtype with a fixed seed; symdl, NumPy and torch are
    first checked against each other. Then, for ``--repeats`` rounds, each implementation
    runs at least twice per round, in an order that rotates every round, and the last call is
    timed (``time.perf_counter``, garbage collector off): the timed call follows a call
    of the same implementation, so it meets the allocator in that implementation's own
    steady state, as in a training loop, not in whatever state its neighbour in the
    rotation left (the NumPy reference frees ~100 MB per call; after it, fresh arrays
    page-fault, which moved single rows by up to 1.5x). The untimed calls go on for at
    least ``SETTLE_SECONDS``, so that the neighbour's idle threads have stopped spinning.
    The table shows medians in ms and the ratios symdl / other (below 1: symdl is faster).

Targets (issue 4): symdl <= 1.1x the hand-written NumPy; conv2d forward+backward <= 2x torch
at equal threads in float32 and <= 1x in float64; max-pool backward <= 1.5x torch.

Usage::

    python scripts/bench_layers.py [--repeats 7] [--cases conv_a,maxpool] [--dtypes float32]
                                   [--threads 1,2] [--quick] [--markdown docs/bench_layers.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from threadpoolctl import ThreadpoolController

import symdl.kernels as K
from timing import write_table  # scripts/timing.py, next to this file

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is optional: its columns are left out
    torch = None

Array = np.ndarray
Step = Callable[[], Any]


# --------------------------------------------------------------------------- hand-written NumPy
def np_conv2d(x: Array, w: Array, b: Array, pad: int) -> tuple[Array, Array]:
    """Stride-1 conv2d: rows of patches (N*Ho*Wo, C*kh*kw) @ W^T; returns the output and the columns."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), dtype=x.dtype)
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))          # (N, C, Ho, Wo, kh, kw)
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    out = cols @ w.reshape(o, -1).T                                    # (N*Ho*Wo, O)
    out += b
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), cols


def np_conv2d_backward(g: Array, x: Array, w: Array, cols: Array, pad: int) -> tuple[Array, Array, Array]:
    """dW = g^T cols, db = sum g, dX = col2im(g W) with one strided add per kernel offset."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = g.shape[2:]
    g2 = g.transpose(0, 2, 3, 1).reshape(-1, o)
    d_w = (g2.T @ cols).reshape(w.shape)
    d_b = g2.sum(axis=0)
    d_cols = (g2 @ w.reshape(o, -1)).reshape(n, ho, wo, c, kh, kw)
    d_xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            d_xp[:, :, i:i + ho, j:j + wo] += d_cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return d_xp[:, :, pad:pad + h, pad:pad + wd], d_w, d_b


def np_max_pool2x2(x: Array) -> tuple[Array, Array]:
    """2x2 stride-2 max pooling by blocks; also the arg-max (0..3, first maximum) per window."""
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = blocks.argmax(axis=-1)
    return np.take_along_axis(blocks, arg[..., None], axis=-1)[..., 0], arg


def np_max_pool2x2_backward(g: Array, arg: Array, shape: tuple[int, ...]) -> Array:
    n, c, h, w = shape
    d = np.zeros((n, c, h // 2, w // 2, 4), dtype=g.dtype)
    np.put_along_axis(d, arg[..., None], g[..., None], axis=-1)
    return d.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(shape)


def np_avg_pool2x2(x: Array) -> Array:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def np_avg_pool2x2_backward(g: Array, shape: tuple[int, ...]) -> Array:
    n, c, h, w = shape
    share = (g * 0.25)[:, :, :, None, :, None]
    return np.broadcast_to(share, (n, c, h // 2, 2, w // 2, 2)).reshape(shape)


def np_batch_norm(x: Array, gamma: Array, beta: Array, eps: float = 1e-5) -> tuple[Array, Array, Array]:
    axes = (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    rstd = 1.0 / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + eps)
    xhat = centred * rstd
    return xhat * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1), xhat, rstd


def np_batch_norm_backward(g: Array, xhat: Array, rstd: Array, gamma: Array) -> tuple[Array, Array, Array]:
    axes = (0, 2, 3)
    d_gamma = (g * xhat).sum(axis=axes)
    d_beta = g.sum(axis=axes)
    d_xhat = g * gamma.reshape(1, -1, 1, 1)
    d_x = rstd * (d_xhat - d_xhat.mean(axis=axes, keepdims=True)
                  - xhat * (d_xhat * xhat).mean(axis=axes, keepdims=True))
    return d_x, d_gamma, d_beta


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One benchmark: builds, per dtype, the steps to time for each implementation."""

    name: str
    label: str
    build: Callable[[np.dtype, np.random.Generator], dict[str, Step]]


def _conv(n: int, c: int, o: int, size: int) -> Callable[[np.dtype, np.random.Generator], dict[str, Step]]:
    def build(dtype: np.dtype, rng: np.random.Generator) -> dict[str, Step]:
        x = rng.standard_normal((n, c, size, size)).astype(dtype)
        w = (rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)).astype(dtype)
        b = rng.standard_normal(o).astype(dtype)
        g = rng.standard_normal((n, o, size, size)).astype(dtype)

        def symdl() -> Any:
            out, columns = K.conv2d(x, w, b, padding=1, return_columns=True)
            return out, *K.conv2d_vjp(g, x, w, b, padding=1, columns=columns)

        def numpy() -> Any:  # the forward returns the columns, as symdl's return_columns
            out, cols = np_conv2d(x, w, b, 1)
            return out, *np_conv2d_backward(g, x, w, cols, 1)

        def reference(xt: Any, wt: Any, bt: Any) -> Any:
            return F.conv2d(xt, wt, bt, padding=1)

        return {"symdl": symdl, "numpy": numpy, **_torch_steps(reference, [x, w, b], g)}

    return build


def _pool(kind: str) -> Callable[[np.dtype, np.random.Generator], dict[str, Step]]:
    def build(dtype: np.dtype, rng: np.random.Generator) -> dict[str, Step]:
        x = rng.standard_normal((32, 16, 32, 32)).astype(dtype)
        g = rng.standard_normal((32, 16, 16, 16)).astype(dtype)
        if kind == "max":
            def symdl() -> Any:
                out, index = K.max_pool2d(x, kernel_size=2, return_indices=True)
                return out, *K.max_pool2d_vjp(g, x, kernel_size=2, indices=index)

            def numpy() -> Any:  # the forward returns the arg-max, as symdl's return_indices
                out, arg = np_max_pool2x2(x)
                return out, np_max_pool2x2_backward(g, arg, x.shape)

            return {"symdl": symdl, "numpy": numpy,
                    **_torch_steps(lambda xt: F.max_pool2d(xt, 2), [x], g)}

        def symdl_avg() -> Any:
            return K.avg_pool2d(x, kernel_size=2), *K.avg_pool2d_vjp(g, x, kernel_size=2)

        def numpy_avg() -> Any:
            return np_avg_pool2x2(x), np_avg_pool2x2_backward(g, x.shape)

        return {"symdl": symdl_avg, "numpy": numpy_avg, **_torch_steps(lambda xt: F.avg_pool2d(xt, 2), [x], g)}

    return build


def _max_pool_backward(dtype: np.dtype, rng: np.random.Generator) -> dict[str, Step]:
    """The backward alone (the issue's max-pool target): forward results computed once, outside."""
    x = rng.standard_normal((32, 16, 32, 32)).astype(dtype)
    g = rng.standard_normal((32, 16, 16, 16)).astype(dtype)
    _, index = K.max_pool2d(x, kernel_size=2, return_indices=True)
    _, arg = np_max_pool2x2(x)
    steps: dict[str, Step] = {
        "symdl": lambda: K.max_pool2d_vjp(g, x, kernel_size=2, indices=index),
        "numpy": lambda: (np_max_pool2x2_backward(g, arg, x.shape),),
    }
    if torch is not None:
        xt = torch.tensor(x, requires_grad=True)
        gt = torch.tensor(g)

        out = F.max_pool2d(xt, 2)  # autograd keeps the indices; only the backward is timed

        def torch_backward() -> Any:
            xt.grad = None
            out.backward(gt, retain_graph=True)
            return (xt.grad.numpy(),)

        steps["torch"] = torch_backward
    return steps


def _batch_norm(dtype: np.dtype, rng: np.random.Generator) -> dict[str, Step]:
    x = rng.standard_normal((32, 16, 32, 32)).astype(dtype)
    gamma, beta = rng.standard_normal(16).astype(dtype), rng.standard_normal(16).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)

    def symdl() -> Any:
        out = K.batch_norm(x, None, None, gamma, beta, training=True)
        d_x, _, _, d_gamma, d_beta = K.batch_norm_vjp(g, x, None, None, gamma, beta, training=True)
        return out, d_x, d_gamma, d_beta

    def numpy() -> Any:
        out, _, _ = np_batch_norm(x, gamma, beta)
        _, xhat, rstd = np_batch_norm(x, gamma, beta)  # the stateless backward recomputes the statistics
        return out, *np_batch_norm_backward(g, xhat, rstd, gamma)

    return {"symdl": symdl, "numpy": numpy,
            **_torch_steps(lambda xt, wt, bt: F.batch_norm(xt, None, None, wt, bt, training=True), [x, gamma, beta], g)}


def _torch_steps(forward: Callable[..., Any], arrays: list[Array], g: Array) -> dict[str, Step]:
    """torch forward + autograd backward on the same data (empty without torch)."""
    if torch is None:
        return {}
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    gt = torch.tensor(g)

    def step() -> Any:
        for t in tensors:
            t.grad = None
        out = forward(*tensors)
        out.backward(gt)
        return out.detach().numpy(), *(t.grad.numpy() for t in tensors)

    return {"torch": step}


CASES = [
    Case("conv_a", "conv2d N=64, 1->16, 8x8, 3x3 pad 1 (fwd+bwd)", _conv(64, 1, 16, 8)),
    Case("conv_b", "conv2d N=64, 16->32, 8x8, 3x3 pad 1 (fwd+bwd)", _conv(64, 16, 32, 8)),
    Case("conv_c", "conv2d N=32, 16->32, 32x32, 3x3 pad 1 (fwd+bwd)", _conv(32, 16, 32, 32)),
    Case("maxpool", "max_pool2d 2x2, (32, 16, 32, 32) (fwd+bwd)", _pool("max")),
    Case("maxpool_bwd", "max_pool2d 2x2 backward only", _max_pool_backward),
    Case("avgpool", "avg_pool2d 2x2, (32, 16, 32, 32) (fwd+bwd)", _pool("avg")),
    Case("batchnorm", "batch_norm training, (32, 16, 32, 32) (fwd+bwd)", _batch_norm),
]


# --------------------------------------------------------------------------- timing
def _agree(results: dict[str, Any], dtype: np.dtype) -> str:
    """'' when every implementation returns the same arrays (to the dtype's precision)."""
    tol = 1e-3 if dtype == np.float32 else 1e-9
    base = [np.asarray(a, dtype=np.float64) for a in results["symdl"]]
    for name, arrays in results.items():
        for a, b in zip(base, arrays):
            b = np.asarray(b, dtype=np.float64)
            if a.shape != b.shape or not np.allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(a).max())):
                return f"{name} disagrees"
    return ""


BLAS = ThreadpoolController()
#: Untimed calls of an implementation before its timed one, for at least this long. Idle BLAS
#: worker threads spin for about 0.1 s after a multi-threaded call (OpenBLAS: 2^28 cycles) and
#: torch's OpenMP workers spin too: on 2 cores, a neighbour's spinning thread took a core from
#: the next implementation's 2-thread call (symdl's split conv ran 1.8x slower right after
#: the NumPy version's BLAS call than alone).
SETTLE_SECONDS = 0.1


def threads_of(name: str, count: int) -> contextlib.AbstractContextManager:
    """Implementation ``name``'s thread settings at ``count`` threads (see "Threads" above)."""
    if name == "symdl":
        K.set_num_threads(count)
        return BLAS.limit(limits=1, user_api="blas")
    K.set_num_threads(1)
    if name == "torch":
        torch.set_num_threads(count)
    return BLAS.limit(limits=count, user_api="blas")


def _time(steps: dict[str, Step], repeats: int, count: int) -> dict[str, float]:
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    gc.disable()
    try:
        for round_ in range(repeats):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                with threads_of(name, count):
                    settle = time.perf_counter() + SETTLE_SECONDS
                    steps[name]()  # untimed: the timed call then follows calls of its own, not a neighbour's
                    while time.perf_counter() < settle:
                        steps[name]()
                    start = time.perf_counter()
                    steps[name]()
                    times[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
        K.set_num_threads(1)
    return {n: statistics.median(t) * 1e3 for n, t in times.items()}


def run(cases: list[Case], dtypes: list[str], threads: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        for dtype_name in dtypes:
            dtype = np.dtype(dtype_name)
            steps = case.build(dtype, np.random.default_rng(0))
            problem = _agree({n: s() for n, s in steps.items()}, dtype)
            for count in threads:
                medians = {} if problem else _time(steps, repeats, count)
                rows.append({"case": case.label, "dtype": dtype_name, "threads": count, "problem": problem,
                             **medians})
                print(_row(rows[-1]), flush=True)
    return rows


def _ratio(row: dict[str, Any], other: str) -> str:
    return f"{row['symdl'] / row[other]:.2f}" if other in row and "symdl" in row else "-"


def _row(row: dict[str, Any]) -> str:
    if row["problem"]:
        return f"| {row['case']} | {row['dtype']} | {row['threads']} | {row['problem']} | | | | |"
    ms = [f"{row[n]:.2f}" if n in row else "-" for n in ("symdl", "numpy", "torch")]
    return (f"| {row['case']} | {row['dtype']} | {row['threads']} | {' | '.join(ms)} | "
            f"{_ratio(row, 'numpy')} | {_ratio(row, 'torch')} |")


#: The issue's targets: (what, rows it applies to, the ratio column, the bound).
TARGETS: list[tuple[str, Callable[[dict[str, Any]], bool], str, float]] = [
    ("symdl <= 1.1x the hand-written NumPy", lambda r: True, "numpy", 1.1),
    ("conv2d fwd+bwd <= 2x torch, float32", lambda r: r["case"].startswith("conv2d") and r["dtype"] == "float32",
     "torch", 2.0),
    ("conv2d fwd+bwd <= 1x torch, float64", lambda r: r["case"].startswith("conv2d") and r["dtype"] == "float64",
     "torch", 1.0),
    ("max-pool backward <= 1.5x torch", lambda r: "backward only" in r["case"], "torch", 1.5),
]


def targets(rows: list[dict[str, Any]]) -> str:
    """One line per target and thread count: the worst ratio and whether it holds."""
    lines = []
    for what, applies, other, bound in TARGETS:
        for count in sorted({r["threads"] for r in rows}):
            ratios = [r["symdl"] / r[other] for r in rows
                      if applies(r) and r["threads"] == count and other in r and "symdl" in r]
            if ratios:
                verdict = "met" if max(ratios) <= bound else "NOT met"
                lines.append(f"* {what}, {count} thread{'s' if count > 1 else ''}: worst {max(ratios):.2f} ({verdict})")
    return "\n".join(lines)


#: Said under the table when other work kept every core busy during the run.
OVERSUBSCRIBED = (" Other processes kept more than every core busy during this run, so the 2-thread rows"
                  " oversubscribe the cores (torch's own thread pool suffers most, up to 100x): read the"
                  " 1-thread rows as the comparison.")


HEADER = ("| case | dtype | threads | symdl ms | NumPy ms | torch ms | symdl / NumPy | symdl / torch |\n"
          "|---|---|---|---|---|---|---|---|")


def machine() -> str:
    versions = f"Python {platform.python_version()}, NumPy {np.__version__}"
    if torch is not None:
        versions += f", torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{platform.system()} {cpu}, {len(os.sched_getaffinity(0))} cores (load average {load} at the end "
            f"of the run: the machine is shared), {versions}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--quick", action="store_true", help="3 repeats, for a smoke test")
    parser.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if c.name in args.cases.split(",")]
    print(HEADER)
    rows = run(chosen, args.dtypes.split(","), [int(t) for t in args.threads.split(",")],
               3 if args.quick else args.repeats)
    print(targets(rows))
    if args.markdown:
        stamp = _dt.date.today().isoformat()
        text = (f"# Layer kernel benchmark\n\nGenerated by `python scripts/bench_layers.py --markdown {args.markdown}` "
                f"on {stamp}: {machine()}. Medians of {3 if args.quick else args.repeats} rounds in rotating order, "
                f"each timed call right after at least {SETTLE_SECONDS:g} s of untimed calls of the same "
                "implementation (its own allocator state; a neighbour's idle threads done spinning); ratios below "
                "1 mean symdl is faster. At T threads: torch.set_num_threads(T), the NumPy "
                "version's BLAS at T, symdl.kernels.set_num_threads(T) with BLAS at 1 per worker when T > 1."
                + (OVERSUBSCRIBED if os.getloadavg()[0] > len(os.sched_getaffinity(0)) else "") + "\n\n"
                + HEADER + "\n" + "\n".join(_row(r) for r in rows) + "\n\nTargets (issue 4):\n\n" + targets(rows) + "\n")
        write_table(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
