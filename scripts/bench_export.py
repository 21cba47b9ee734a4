"""Benchmark: exported PyTorch ops (forward + backward) against torch.nn.functional's built-ins.

For each op, on 1e6 elements (1000 x 1000 for row ops and losses), float32 and
float64, CPU, one thread: the median time of forward + backward of the
exported ``torch.autograd.Function`` and of the built-in, measured alternately
(A, B, A, B, ...) in one run because the machine is shared, and their ratio.
The export's elementwise ops run fused C++ loops on the CPU (symdl.export.fused);
the same module printed without them (its PyTorch operations into their own
temporaries: what runs without a C++ compiler, or with SYMDL_FUSED=0) and printed
in the plain form (every operation a fresh tensor, every backward from the inputs)
are measured in the same alternation, so that each gain is read within one run.
Targets: <= 1.5x for elementwise ops, <= 2x for softmax-like ops and losses.
With ``--compile``, the same under ``torch.compile`` (inductor) for both, for
the ops listed in :data:`COMPILED` (``--compile all``: every op; compilation
takes tens of seconds per op).

With ``--clock cpu``, the process's CPU time instead of wall time. With ``--ops``, only the
ops listed (comma-separated); with ``--against FILE.py``, the
functions of another exported module (e.g. one written by an earlier symdl) are measured in
the same alternation too, in two more columns (A/B within one run).

Run: ``python scripts/bench_export.py [--repeats 7] [--compile [all]] [--clock cpu] [--ops NAME,...]
[--against FILE.py]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.export import export_source, resolve
from symdl.export.torch_module import render

ELEMENTWISE = ["relu", "leaky_relu", "elu", "gelu", "silu", "mish", "softplus", "sigmoid", "tanh", "hardswish",
               "logsigmoid"]
ROWS = ["softmax", "log_softmax"]
LOSSES = ["mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits",
          "soft_margin_loss", "cross_entropy", "nll_loss", "multi_margin_loss"]
COMPILED = ["gelu", "silu", "softmax", "mse_loss"]
TARGETS = {"elementwise": 1.5, "row": 2.0, "pointwise_loss": 2.0, "class_loss": 2.0}


def _builtin(name: str) -> Callable[..., torch.Tensor]:
    target = torch
    for part in ACTIVATIONS_AND_LOSSES[name].torch.split(".")[1:]:
        target = getattr(target, part)
    return target


def _inputs(name: str, dtype: torch.dtype, rows: int = 1000) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    op = ACTIVATIONS_AND_LOSSES[name]
    shape = (rows, 1000)
    arrays = []
    for item in op.inputs:
        if item.role == "class_index":  # rows of 1000 classes
            values = torch.randint(0, shape[1], shape[:1], generator=generator)
            arrays.append(values)
            continue
        if item.role == "sign":
            values = torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1
        elif name == "binary_cross_entropy_with_logits" and item.name == "target":
            values = torch.rand(shape, generator=generator, dtype=dtype)
        else:
            values = torch.randn(shape, generator=generator, dtype=dtype) * 3
        arrays.append(values.requires_grad_(item.differentiable))
    if name == "nll_loss":  # log-probabilities, as nll_loss expects
        arrays[0] = torch.log_softmax(arrays[0].detach(), dim=1).requires_grad_(True)
    return arrays


def _step(function: Callable[..., torch.Tensor], inputs: list[torch.Tensor], params: dict) -> Callable[[], None]:
    differentiable = [t for t in inputs if t.requires_grad]  # class indices are integers: no gradient

    def run() -> None:
        out = function(*inputs, **params)
        upstream = torch.ones_like(out)
        torch.autograd.grad(out, differentiable, upstream)

    return run


def _alternate(*runs: Callable[[], None], repeats: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Median seconds of each of ``runs``, measured alternately (A, B, C, A, B, C, ...) after one warm-up each,
    on ``clock`` (wall time, or the process's CPU time, which a loaded machine's other processes do not inflate)."""
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, measured in zip(runs, times):
            start = clock()
            run()
            measured.append(clock() - start)
    return [statistics.median(measured) for measured in times]


def _load(source: str, name: str, directory: str):
    path = Path(directory) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # torch.compile looks the module up by name
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", nargs="?", const="some", choices=("some", "all"),
                        help="add torch.compile figures: for COMPILED ops (some) or for every op (all)")
    parser.add_argument("--ops", help="comma-separated op names (default: every benchmarked op)")
    parser.add_argument("--against", type=Path, help="another exported torch module to measure in the alternation")
    parser.add_argument("--rows", type=int, default=1000,
                        help="rows of 1000 elements (default 1000: 1e6 elements; 10 shows the fixed costs of a call)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default) or the process's CPU time (steadier on a shared, loaded machine)")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    names = ELEMENTWISE + ROWS + LOSSES
    if args.ops:
        names = [name for name in args.ops.split(",") if name]
        unknown = sorted(set(names) - set(ELEMENTWISE + ROWS + LOSSES) - set(ACTIVATIONS_AND_LOSSES))
        if unknown:
            parser.error(f"unknown ops: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as directory:
        exported = _load(export_source(names, "torch"), "bench_ops_torch", directory)
        unfused = _load(render(resolve(names), fused=False), "bench_ops_torch_unfused", directory)
        plain = _load(render(resolve(names), inplace=False, from_output=False), "bench_ops_torch_plain", directory)
        against = _load(args.against.read_text(), "bench_ops_torch_against", directory) if args.against else None
        print(f"# torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
              f"1 thread, median {args.clock} time of {args.repeats} alternating runs, "
              f"forward + backward on {args.rows} x 1000 elements, "
              f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} at the start")
        header = ("| op | dtype | symdl export (ms) | built-in (ms) | ratio | target | without fused loops (ms) "
                  "| its ratio | plain-form export (ms) | plain ratio |")
        if against is not None:
            header += f" {args.against.name} (ms) | its ratio |"
        if args.compile:
            header += " compiled export (ms) | compiled built-in (ms) | compiled ratio |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        for name in names:
            op = ACTIVATIONS_AND_LOSSES[name]
            params = {"dim": 1} if op.kind == "row" else {}
            for dtype in (torch.float32, torch.float64):
                inputs = _inputs(name, dtype, args.rows)
                ours = _step(getattr(exported, name), inputs, params)
                theirs = _step(_builtin(name), inputs, params)
                operations = _step(getattr(unfused, name), inputs, params)
                before = _step(getattr(plain, name), inputs, params)
                runs = [ours, theirs, operations, before]
                runs += [_step(getattr(against, name), inputs, params)] if against else []
                a, b, o, c, *d = _alternate(*runs, repeats=args.repeats, clock=clock)
                target = TARGETS[op.kind]
                row = (f"| {name} | {str(dtype).removeprefix('torch.')} | {a * 1e3:.2f} | {b * 1e3:.2f} | "
                       f"{a / b:.2f} | <= {target} | {o * 1e3:.2f} | {o / b:.2f} | {c * 1e3:.2f} | {c / b:.2f} |")
                row += "".join(f" {v * 1e3:.2f} | {v / b:.2f} |" for v in d)
                if args.compile:
                    if args.compile == "all" or name in COMPILED:
                        torch._dynamo.reset()  # a fresh cache per op: no recompile limit, no eager fallback
                        compiled_ours = _step(torch.compile(getattr(exported, name)), inputs, params)
                        compiled_theirs = _step(torch.compile(_builtin(name)), inputs, params)
                        ca, cb = _alternate(compiled_ours, compiled_theirs, repeats=args.repeats, clock=clock)
                        row += f" {ca * 1e3:.2f} | {cb * 1e3:.2f} | {ca / cb:.2f} |"
                    else:
                        row += " | | |"
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
