#!/usr/bin/env python
"""Steps per second of each symdl optimizer against hand-written NumPy and torch.optim.

For every optimizer at its default hyper-parameters, float32 and float64, 1e6
parameters as one array and as 50 arrays: symdl.optim, a careful hand-written
NumPy step (below: in place, scratch allocated once, cache-sized blocks, fewest
passes we could find for the same semantics) and, when torch is installed,
torch.optim with foreach=False (single-tensor) and foreach=True. Within each
repeat the implementations run back to back in a seeded shuffled order (so none
always inherits another's cache and allocator state). The table gives the median
steps per second of each, and the ratios symdl / NumPy and symdl / torch
single-tensor as the median over repeats of the ratio *within* each repeat: the
two sides of a ratio are timed a few hundred milliseconds apart, so the drift of
a shared machine's speed over minutes (about 1.5x here) cancels out of it.

With ``--ab OLD.py`` it compares instead two versions of the generated steps in
one process: ``symdl/optim/_generated.py`` against a saved copy of an older one
(at the defaults and with every branch flag on), plus the old one against a
second import of itself, whose ratio shows the noise.

Usage:
    python scripts/bench_optim.py [--repeats 15] [--steps 3] [--markdown docs/bench_optim.md]
    python scripts/bench_optim.py --ab /tmp/old_generated.py [--repeats 31]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import platform
import statistics
import time
from collections.abc import Callable
from types import ModuleType

import numpy as np
from threadpoolctl import threadpool_limits

import symdl.optim as optim
from symdl.optim._blas import load as load_blas
from timing import paired_ratio, write_table  # scripts/timing.py, next to this file

SIZE, PIECES = 1_000_000, 50


# --------------------------------------------------------------------------- hand-written NumPy (defaults only)
def _sgd(p, g, s, k, t):  # lr 1e-3
    np.multiply(g, 1e-3, out=k[0])
    p -= k[0]


def _adagrad(p, g, s, k, t):  # lr 1e-2, eps 1e-10
    acc = s.setdefault("sum", np.zeros_like(p))
    np.square(g, out=k[0])
    acc += k[0]
    np.sqrt(acc, out=k[0])
    k[0] += 1e-10
    np.divide(g, k[0], out=k[0])
    k[0] *= 1e-2
    p -= k[0]


def _rmsprop(p, g, s, k, t):  # lr 1e-2, alpha 0.99, eps 1e-8
    v = s.setdefault("v", np.zeros_like(p))
    v *= 0.99
    np.square(g, out=k[0])
    k[0] *= 0.01
    v += k[0]
    np.sqrt(v, out=k[0])
    k[0] += 1e-8
    np.divide(g, k[0], out=k[0])
    k[0] *= 1e-2
    p -= k[0]


def _adadelta(p, g, s, k, t):  # lr 1, rho 0.9, eps 1e-6
    v, u = s.setdefault("v", np.zeros_like(p)), s.setdefault("u", np.zeros_like(p))
    v *= 0.9
    np.square(g, out=k[0])
    k[0] *= 0.1
    v += k[0]
    np.add(u, 1e-6, out=k[0])
    np.add(v, 1e-6, out=k[1])
    np.divide(k[0], k[1], out=k[0])
    np.sqrt(k[0], out=k[0])  # one sqrt of the ratio instead of two
    k[0] *= g
    u *= 0.9
    np.square(k[0], out=k[1])
    k[1] *= 0.1
    u += k[1]
    p -= k[0]


def _moments(m, v, g, scratch):  # Adam's moments at betas (0.9, 0.999): m += 0.1 (g - m); v = 0.999 v + 0.001 g^2
    np.subtract(g, m, out=scratch)
    scratch *= 0.1
    m += scratch
    v *= 0.999
    np.square(g, out=scratch)
    scratch *= 0.001
    v += scratch


def _adam_core(p, g, s, k, t, lr):
    m, v = s.setdefault("m", np.zeros_like(p)), s.setdefault("v", np.zeros_like(p))
    _moments(m, v, g, k[0])
    bc1, bc2 = 1 - 0.9**t, 1 - 0.999**t
    step = lr / bc1
    np.sqrt(v, out=k[0])
    k[0] *= 1 / (math.sqrt(bc2) * step)  # denominator pre-scaled: p -= m / k0
    k[0] += 1e-8 / step
    np.divide(m, k[0], out=k[0])
    p -= k[0]


def _adam(p, g, s, k, t):
    _adam_core(p, g, s, k, t, 1e-3)


def _adamw(p, g, s, k, t):  # weight_decay 1e-2, decoupled
    p *= 1 - 1e-3 * 1e-2
    _adam_core(p, g, s, k, t, 1e-3)


def _adamax(p, g, s, k, t):  # lr 2e-3
    m, u = s.setdefault("m", np.zeros_like(p)), s.setdefault("u", np.zeros_like(p))
    np.subtract(g, m, out=k[0])
    k[0] *= 0.1
    m += k[0]
    u *= 0.999
    np.abs(g, out=k[0])
    k[0] += 1e-8
    np.maximum(u, k[0], out=u)
    np.divide(m, u, out=k[0])
    k[0] *= 2e-3 / (1 - 0.9**t)
    p -= k[0]


def _nadam(p, g, s, k, t):  # lr 2e-3, momentum_decay 4e-3
    m, v = s.setdefault("m", np.zeros_like(p)), s.setdefault("v", np.zeros_like(p))
    mu = 0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3))
    mu_next = 0.9 * (1 - 0.5 * 0.96 ** ((t + 1) * 4e-3))
    s["mu_product"] = prod = s.get("mu_product", 1.0) * mu
    _moments(m, v, g, k[0])
    np.divide(v, 1 - 0.999**t, out=k[0])
    np.sqrt(k[0], out=k[0])
    k[0] += 1e-8
    np.multiply(g, 2e-3 * (1 - mu) / (1 - prod), out=k[1])  # both terms over one denominator
    np.multiply(m, 2e-3 * mu_next / (1 - prod * mu_next), out=k[2])
    k[1] += k[2]
    k[1] /= k[0]
    p -= k[1]


def _radam(p, g, s, k, t):  # lr 1e-3
    m, v = s.setdefault("m", np.zeros_like(p)), s.setdefault("v", np.zeros_like(p))
    _moments(m, v, g, k[0])
    bc1, bc2 = 1 - 0.9**t, 1 - 0.999**t
    rho_inf = 2 / 0.001 - 1
    rho_t = rho_inf - 2 * t * 0.999**t / bc2
    if rho_t > 5:
        rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        np.sqrt(v, out=k[0])
        k[0] += 1e-8
        np.divide(m, k[0], out=k[0])
        k[0] *= 1e-3 * rect * math.sqrt(bc2) / bc1
    else:
        np.multiply(m, 1e-3 / bc1, out=k[0])
    p -= k[0]


def _lion(p, g, s, k, t):  # lr 1e-4, betas (0.9, 0.99)
    m = s.setdefault("m", np.zeros_like(p))
    np.subtract(g, m, out=k[0])
    k[0] *= 0.1
    k[0] += m  # c = m + 0.1 (g - m) = 0.9 m + 0.1 g
    np.sign(k[0], out=k[1])
    k[1] *= 1e-4
    p -= k[1]
    m *= 0.99
    np.multiply(g, 0.01, out=k[0])
    m += k[0]


HAND: dict[str, Callable] = {"SGD": _sgd, "Adagrad": _adagrad, "RMSprop": _rmsprop, "Adadelta": _adadelta,
                             "Adam": _adam, "AdamW": _adamw, "Adamax": _adamax, "NAdam": _nadam, "RAdam": _radam,
                             "Lion": _lion}


# --------------------------------------------------------------------------- runners
def _symdl(name: str, params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None]:
    optimizer = getattr(optim, name)(params)
    return lambda: optimizer.step(grads)


#: The hand-written steps run on blocks of this many bytes of each array, so that
#: their several passes hit the L2 cache (as symdl.optim does; a careful
#: NumPy user would too): each block is an independent piece with its own state.
HAND_BLOCK_BYTES = 256 * 1024


def _hand(name: str, params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None]:
    pieces = []
    for p, g in zip(params, grads):
        block = max(HAND_BLOCK_BYTES // p.itemsize, 1)
        flat_p, flat_g = p.reshape(-1), g.reshape(-1)
        pieces += [(flat_p[i:i + block], flat_g[i:i + block], {}) for i in range(0, p.size, block)]
    scratch = {piece[0].shape: [np.empty_like(piece[0]) for _ in range(3)] for piece in pieces}
    counter = [0]
    update = HAND[name]

    def step() -> None:
        counter[0] += 1
        for p, g, s in pieces:
            update(p, g, s, scratch[p.shape], counter[0])
    return step


def _torch(foreach: bool) -> Callable:
    def make(name: str, params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None]:
        import torch

        tensors = [torch.from_numpy(p) for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        optimizer = getattr(torch.optim, name)(tensors, foreach=foreach)
        return optimizer.step
    return make


def _layouts(dtype: type, rng: np.random.Generator) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    one = [rng.standard_normal(SIZE).astype(dtype)]
    many = [rng.standard_normal(SIZE // PIECES).astype(dtype) for _ in range(PIECES)]
    return {"1 x 1e6": (one, [rng.standard_normal(p.shape).astype(dtype) for p in one]),
            "50 x 2e4": (many, [rng.standard_normal(p.shape).astype(dtype) for p in many])}


#: Shortest timed sample: a sample of a few fast steps is at the mercy of one interrupt.
MIN_SAMPLE_SECONDS = 0.02


def _steps_per_sample(step: Callable[[], None], minimum: int) -> int:
    """Steps per timed sample: at least ``minimum`` and enough for :data:`MIN_SAMPLE_SECONDS`."""
    start = time.perf_counter()
    step()
    return max(minimum, math.ceil(MIN_SAMPLE_SECONDS / max(time.perf_counter() - start, 1e-9)))


def _time(steps: dict[str, Callable[[], None]], count: int, repeats: int,
          rng: np.random.Generator) -> dict[str, list[float]]:
    """Seconds per step of each runner in each repeat (runners in a shuffled order within a repeat)."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for runner in rng.permutation(list(steps)):
            step = steps[runner]
            start = time.perf_counter()
            for _ in range(count):
                step()
            times[runner].append((time.perf_counter() - start) / count)
    return times


#: ``--ab``: hyper-parameters that take every branch of each rule (beside the defaults).
FLAGS: dict[str, dict[str, object]] = {
    "SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    "Adagrad": {"weight_decay": 1e-2, "lr_decay": 1e-3},
    "RMSprop": {"momentum": 0.9, "centered": True}, "Adadelta": {"weight_decay": 1e-2},
    "Adam": {"amsgrad": True, "weight_decay": 1e-2}, "AdamW": {"amsgrad": True}, "Adamax": {"weight_decay": 1e-2},
    "NAdam": {"decoupled_weight_decay": True, "weight_decay": 1e-2},
    "RAdam": {"decoupled_weight_decay": True, "weight_decay": 1e-2}, "Lion": {"weight_decay": 1e-2},
}


def _load(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ab(path: str, names: list[str], repeats: int, minimum: int) -> list[str]:
    """Markdown rows: the current generated steps against the old ones at ``path`` (see the module docstring)."""
    import symdl.optim._generated as new

    modules = {"new": new, "old": _load(path, "old_generated"), "control": _load(path, "old_generated_control")}
    rng = np.random.default_rng(0)
    rows = ["| optimizer | hyper-parameters | dtype | layout | old steps/s | new steps/s | new/old time | "
            "old/old time (noise) |", "|---|---|---|---|---|---|---|---|"]
    for dtype in (np.float32, np.float64):
        for layout, (params, grads) in _layouts(dtype, rng).items():
            for name in names:
                for config in ({}, FLAGS[name]):
                    steps = {}
                    for runner, module in modules.items():
                        optimizer = getattr(module, name)([p.copy() for p in params], **config)
                        steps[runner] = functools.partial(optimizer.step, grads)
                        steps[runner]()  # create the state
                    times = _time(steps, _steps_per_sample(steps["old"], minimum), repeats, rng)
                    label = ", ".join(f"{k}={v}" for k, v in config.items()) or "defaults"
                    row = (f"| {name} | {label} | {np.dtype(dtype).name} | {layout} | "
                           f"{1 / statistics.median(times['old']):.0f} | {1 / statistics.median(times['new']):.0f} | "
                           f"{paired_ratio(times['new'], times['old']):.3f} | "
                           f"{paired_ratio(times['control'], times['old']):.3f} |")
                    rows.append(row)
                    print(row, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3, help="fewest steps per timed sample")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--only", help="comma-separated optimizer names")
    parser.add_argument("--ab", metavar="OLD.py", help="compare the generated steps with this older copy instead")
    args = parser.parse_args()
    try:
        import torch

        torch_version = torch.__version__
        torch.set_num_threads(1)  # NumPy is single-threaded: compare one core against one core
    except ImportError:
        torch_version = None
    # symdl's axpy updates run in SciPy's BLAS: loaded first, so that the limit covers it
    load_blas()
    threadpool_limits(limits=1, user_api="blas")
    runners = {"symdl": _symdl, "numpy": _hand}
    if torch_version:
        runners |= {"torch": _torch(False), "torch foreach": _torch(True)}
    names = args.only.split(",") if args.only else list(HAND)
    if args.ab:
        _ab(args.ab, names, args.repeats, args.steps)
        return 0
    rows = []
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        layouts = _layouts(dtype, rng)
        for name in names:
            for layout, (params, grads) in layouts.items():
                steps = {}
                for runner, make in runners.items():
                    if runner.startswith("torch") and name == "Lion":
                        continue
                    copies = [p.copy() for p in params]
                    steps[runner] = make(name, copies, grads)
                    steps[runner]()  # create the state
                times = _time(steps, _steps_per_sample(steps["symdl"], args.steps), args.repeats, rng)
                med = {k: statistics.median(v) for k, v in times.items()}
                ratios = {k: paired_ratio(times["symdl"], v) for k, v in times.items() if k != "symdl"}
                rows.append((name, np.dtype(dtype).name, layout, med, ratios))
                print(name, np.dtype(dtype).name, layout, {k: f"{1 / v:.0f}/s" for k, v in med.items()}, flush=True)
    header = (f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
              f"NumPy {np.__version__}, torch {torch_version or 'not installed'} (1 thread; BLAS 1 thread); medians of "
              f"{args.repeats} shuffled repeats of at least {args.steps} steps and {MIN_SAMPLE_SECONDS * 1e3:.0f} ms, "
              "default hyper-parameters; each ratio is the median of the ratios within a repeat.")
    lines = [header, "", "| optimizer | dtype | layout | symdl steps/s | NumPy steps/s | torch steps/s | "
             "torch foreach steps/s | symdl/NumPy time | symdl/torch time |", "|---|---|---|---|---|---|---|---|---|"]
    for name, dtype, layout, med, ratios in rows:
        cell = lambda k: f"{1 / med[k]:.0f}" if k in med else "-"  # noqa: E731
        ratio = lambda k: f"{ratios[k]:.2f}" if k in ratios else "-"  # noqa: E731
        lines.append(f"| {name} | {dtype} | {layout} | {cell('symdl')} | {cell('numpy')} | {cell('torch')} | "
                     f"{cell('torch foreach')} | {ratio('numpy')} | {ratio('torch')} |")
    numpy_ratios = [ratios["numpy"] for *_, ratios in rows]
    torch_ratios = [ratios["torch"] for *_, ratios in rows if "torch" in ratios]
    summary = [f"geometric mean symdl/NumPy time: {statistics.geometric_mean(numpy_ratios):.2f} "
               f"(max {max(numpy_ratios):.2f})"]
    if torch_ratios:
        summary.append(f"geometric mean symdl/torch single-tensor time: {statistics.geometric_mean(torch_ratios):.2f} "
                       f"(max {max(torch_ratios):.2f})")
    text = "\n".join(["# Optimizer step benchmark", "", "`python scripts/bench_optim.py --markdown "
                      "docs/bench_optim.md`", "", *lines, "", *summary, ""])
    print("\n".join(summary))
    if args.markdown:
        write_table(args.markdown, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
