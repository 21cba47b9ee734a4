#!/usr/bin/env python
"""Milliseconds per training epoch: symdl's trainer against PyTorch and hand-written NumPy.

What is compared
    One epoch on scikit-learn's digits (1,438 training images, batches of 64,
    shuffled by a fixed generator) of two models, float32, Adam(lr=1e-3):

    * ``mlp``: Flatten - Linear(64, 128) - ReLU - Linear(128, 10);
    * ``cnn``: Conv 3x3 16 (pad 1) - ReLU - MaxPool 2 - Conv 3x3 32 (pad 1) -
      ReLU - MaxPool 2 - Flatten - Linear(128, 10);

    with cross-entropy loss, by three implementations that start from the
    same weights (symdl's kaiming-uniform initialisation, copied) and see the
    same batches:

    * ``symdl``: the trainer's own step (:class:`symdl.train.Trainer`:
      ``symdl.nn`` layers over the generated kernels, ``symdl.optim.Adam``; the CNN's
      Conv2d - ReLU - MaxPool2d blocks run fused, as ``nn.Sequential`` runs them in training);
    * ``torch``: the same ``torch.nn.Sequential`` and ``torch.optim.Adam``
      (when torch is installed), ``zero_grad(set_to_none=True)``;
    * ``numpy``: the hand-written NumPy version in this file (:class:`NumpyMLP`,
      :class:`NumpyCNN`, :func:`numpy_adam`): what a careful person writes by
      hand, with in-place updates, im2col convolutions (nine shifted copies), no input gradient for
      the first layer, max pooling from strided corners with ties to the first maximum
      and its backward as one scatter.

Method
    For each thread count T (``--threads``, 1 and 2): torch runs on T threads
    (``torch.set_num_threads``) and symdl as ``symdl train --threads T`` runs it
    (``symdl.kernels.set_num_threads(T)``: a batch large enough to pay for it is split
    over T threads, each calling BLAS on one thread); the BLAS of both NumPy
    implementations runs ``--numpy-threads`` threads (threadpoolctl; default 1, as
    ``symdl train`` sets it: on these small matrices a second BLAS thread only waits), and each of
    ``--repeats`` rounds runs one epoch of every implementation, in an order
    that rotates every round; time.perf_counter, garbage collector off. The
    table shows medians and the ratios symdl/torch and symdl/numpy (below 1:
    symdl is faster), each the median over rounds of the ratio within a round
    (both epochs timed a few hundred milliseconds apart, so the drift of a
    shared machine's speed over minutes cancels out of it). One run; the machine and versions are printed with it.

    Then a float64 check: one batch through symdl and torch (float64 copies
    of the same weights); every parameter gradient must agree to 1e-12
    relative (max |a - b| / max |b|).

Usage::

    python scripts/bench_trainer.py [--repeats 15] [--models mlp,cnn] [--threads 1,2]
                                    [--numpy-threads 1]
                                    [--markdown docs/bench_trainer.md]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from symdl.data import batches, load_digits
from symdl.kernels import set_num_threads
from symdl.train import TrainConfig, Trainer
from timing import paired_ratio, write_table  # scripts/timing.py, next to this file

Array = np.ndarray
LR, BATCH, SEED = 1e-3, 64, 0


# --------------------------------------------------------------------------- the hand-written NumPy version
def numpy_adam(params: list[Array], lr: float = LR, beta1: float = 0.9, beta2: float = 0.999,
               eps: float = 1e-8) -> Callable[[list[Array]], None]:
    """torch.optim.Adam's update (no weight decay), in place with preallocated buffers."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    scratch = [np.empty_like(p) for p in params]
    step = [0]

    def update(grads: list[Array]) -> None:
        step[0] += 1
        step_size = lr / (1 - beta1 ** step[0])
        root_bias = (1 - beta2 ** step[0]) ** 0.5
        for p, g, m_, v_, s in zip(params, grads, m, v, scratch, strict=True):
            m_ *= beta1
            np.multiply(g, 1 - beta1, out=s)
            m_ += s
            v_ *= beta2
            np.multiply(g, g, out=s)
            s *= 1 - beta2
            v_ += s
            np.sqrt(v_, out=s)
            s /= root_bias
            s += eps
            np.divide(m_, s, out=s)
            s *= step_size
            p -= s

    return update


def _cross_entropy(logits: Array, y: Array) -> tuple[float, Array]:
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    total = shifted.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - np.log(shifted[rows, y])))
    shifted /= total
    shifted[rows, y] -= 1.0
    shifted *= 1.0 / len(y)
    return loss, shifted


class NumpyMLP:
    """Linear - ReLU - Linear, forward and backward by hand."""

    def __init__(self, state: dict[str, Array]) -> None:
        self.w1, self.b1, self.w2, self.b2 = (state[k].copy() for k in ("1.weight", "1.bias", "3.weight", "3.bias"))
        self.params = [self.w1, self.b1, self.w2, self.b2]
        self.adam = numpy_adam(self.params)

    def step(self, x: Array, y: Array) -> float:
        loss, grads = self.gradients(x, y)
        self.adam(grads)
        return loss

    def gradients(self, x: Array, y: Array) -> tuple[float, list[Array]]:
        x = x.reshape(len(x), -1)
        h = x @ self.w1.T
        h += self.b1
        np.maximum(h, 0, out=h)
        logits = h @ self.w2.T
        logits += self.b2
        loss, d_logits = _cross_entropy(logits, y)
        d_h = d_logits @ self.w2
        d_h *= h > 0
        return loss, [d_h.T @ x, d_h.sum(axis=0), d_logits.T @ h, d_logits.sum(axis=0)]


def _conv_forward(x: Array, w: Array, b: Array) -> tuple[Array, Array]:
    """3x3 convolution, padding 1, via im2col: output (N, O, H, W) and the columns.

    The columns are built channel-major, (3, 3, C, N, H, W), by nine shifted copies of
    the padded input (contiguous writes), so one matrix product with the weight
    reordered to (O, 3, 3, C) gives the output as (O, N, H, W)."""
    n, c, height, width = x.shape
    padded = np.zeros((c, n, height + 2, width + 2), x.dtype)
    padded[:, :, 1:-1, 1:-1] = x.transpose(1, 0, 2, 3)
    cols = np.empty((3, 3, c, n, height, width), x.dtype)
    for i in range(3):
        for j in range(3):
            cols[i, j] = padded[:, :, i:i + height, j:j + width]
    cols = cols.reshape(9 * c, n * height * width)
    out = w.transpose(0, 2, 3, 1).reshape(len(w), -1) @ cols
    out += b[:, None]
    return out.reshape(-1, n, height, width).transpose(1, 0, 2, 3), cols


def _conv_backward(grad: Array, cols: Array, w: Array, x_shape: tuple[int, ...],
                   need_input: bool) -> tuple[Array | None, Array, Array]:
    """Gradients of the input (col2im: nine shifted adds), weight and bias."""
    n, c, height, width = x_shape
    g2 = grad.transpose(1, 0, 2, 3).reshape(len(w), -1)
    d_w = (g2 @ cols.T).reshape(len(w), 3, 3, c).transpose(0, 3, 1, 2)
    d_b = g2.sum(axis=1)
    if not need_input:
        return None, d_w, d_b
    d_cols = (w.transpose(0, 2, 3, 1).reshape(len(w), -1).T @ g2).reshape(3, 3, c, n, height, width)
    d_padded = np.zeros((c, n, height + 2, width + 2), grad.dtype)
    for i in range(3):
        for j in range(3):
            d_padded[:, :, i:i + height, j:j + width] += d_cols[i, j]
    return d_padded[:, :, 1:-1, 1:-1].transpose(1, 0, 2, 3), d_w, d_b


_WINDOW_STARTS: dict[tuple[int, ...], Array] = {}


def _pool_forward(x: Array) -> tuple[Array, Array]:
    """2x2 max pooling, stride 2, from the four strided corners of each window: the output and
    the flat index into ``x`` of each window's first maximum (PyTorch's tie rule)."""
    n, c, height, width = x.shape
    blocks = x.reshape(n, c, height // 2, 2, width // 2, 2)
    corners = [blocks[:, :, :, i, :, j] for i in (0, 1) for j in (0, 1)]
    out = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
    # corner of the first maximum: 0, 1 (same row), width, width + 1 (next row)
    offset = np.where(corners[0] == out, 0, np.where(corners[1] == out, 1, np.where(corners[2] == out, width,
                                                                                       width + 1)))
    starts = _WINDOW_STARTS.get(x.shape)
    if starts is None:  # flat index of each window's top-left element, once per shape
        starts = _WINDOW_STARTS[x.shape] = np.arange(x.size).reshape(x.shape)[:, :, ::2, ::2].copy()
    offset += starts
    return out, offset


def _pool_backward(grad: Array, index: Array, x_shape: tuple[int, ...]) -> Array:
    """Each window's gradient to its first maximum (windows do not overlap: one scatter)."""
    out = np.zeros(int(np.prod(x_shape)), grad.dtype)
    out[index.ravel()] = grad.ravel()
    return out.reshape(x_shape)


class NumpyCNN:
    """conv-relu-pool-conv-relu-pool-linear, forward and backward by hand."""

    def __init__(self, state: dict[str, Array]) -> None:
        keys = ("0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias")
        self.params = [state[k].copy() for k in keys]
        self.adam = numpy_adam(self.params)

    step = NumpyMLP.step

    def gradients(self, x: Array, y: Array) -> tuple[float, list[Array]]:
        w1, b1, w2, b2, w3, b3 = self.params
        z1, cols1 = _conv_forward(x, w1, b1)
        a1 = np.maximum(z1, 0)
        p1, i1 = _pool_forward(a1)
        z2, cols2 = _conv_forward(p1, w2, b2)
        a2 = np.maximum(z2, 0)
        p2, i2 = _pool_forward(a2)
        flat = p2.reshape(len(x), -1)
        logits = flat @ w3.T
        logits += b3
        loss, d_logits = _cross_entropy(logits, y)
        d_flat = d_logits @ w3
        d_a2 = _pool_backward(d_flat.reshape(p2.shape), i2, a2.shape)
        d_a2 *= z2 > 0
        d_p1, d_w2, d_b2 = _conv_backward(d_a2, cols2, w2, p1.shape, need_input=True)
        d_a1 = _pool_backward(d_p1, i1, a1.shape)
        d_a1 *= z1 > 0
        _, d_w1, d_b1 = _conv_backward(d_a1, cols1, w1, x.shape, need_input=False)
        return loss, [d_w1, d_b1, d_w2, d_b2, d_logits.T @ flat, d_logits.sum(axis=0)]


NUMPY_MODELS = {"mlp": NumpyMLP, "cnn": NumpyCNN}


# --------------------------------------------------------------------------- the three contenders
def symdl_epoch(trainer: Trainer, order: list[Array]) -> Callable[[], None]:
    """symdl's training step over the fixed batches (the trainer's own loop body)."""
    def run() -> None:
        trainer.model.train()
        for index in order:
            logits = trainer.model.forward(trainer.x_train[index])
            trainer.criterion.forward(logits, trainer.y_train[index])
            trainer.model.backward(trainer.criterion.backward(), input_grad=False)
            trainer.optimizer.step(trainer.model.gradients())
    return run


def numpy_epoch(model: Any, x: Array, y: Array, order: list[Array]) -> Callable[[], None]:
    def run() -> None:
        for index in order:
            model.step(x[index], y[index])
    return run


def torch_model(name: str, state: dict[str, Array], dtype: Any) -> Any:
    import torch
    from torch import nn

    layers = {
        "mlp": lambda: [nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)],
        "cnn": lambda: [nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)],
    }
    model = nn.Sequential(*layers[name]()).to(dtype)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return model


def torch_epoch(name: str, state: dict[str, Array], x: Array, y: Array, order: list[Array]) -> Callable[[], None]:
    import torch

    model = torch_model(name, state, torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    batches_t = [torch.from_numpy(index) for index in order]

    def run() -> None:
        for index in batches_t:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xt[index]), yt[index]).backward()
            optimizer.step()
    return run


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- measuring
def time_epochs(model: str, threads: int, repeats: int, folder: Path,
                numpy_threads: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per epoch of each implementation, one per round: torch and symdl's kernels at
    ``threads`` threads, the BLAS of both NumPy ones at ``numpy_threads``; wall-clock and the
    process's CPU time (time.process_time: on a shared machine the wall clock also counts the time
    other jobs held the core, the CPU time does not)."""
    data = load_digits()
    shutil.rmtree(folder, ignore_errors=True)
    trainer = Trainer(TrainConfig(model=model, epochs=1), folder, dataset=data)
    state = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    x, y = trainer.x_train, trainer.y_train
    order = batches(len(y), BATCH, np.random.default_rng(SEED))
    runs = {"symdl": symdl_epoch(trainer, order),
            "numpy": numpy_epoch(NUMPY_MODELS[model](state), x, y, order)}
    if has_torch():
        import torch

        torch.set_num_threads(threads)
        runs["torch"] = torch_epoch(model, state, x, y, order)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    set_num_threads(threads)
    with threadpool_limits(limits=numpy_threads, user_api="blas"):
        for name in names:  # warm-up: first-touch allocations, thread pools
            runs[name]()
        gc.disable()
        try:
            for round_ in range(repeats):
                for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    runs[name]()
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
        finally:
            gc.enable()
            set_num_threads(1)
    return times, cpu


def gradient_agreement(model: str, folder: Path) -> float:
    """Max over parameters of max |symdl - torch| / max |torch|, float64, one batch."""
    import torch

    data = load_digits()
    shutil.rmtree(folder, ignore_errors=True)
    trainer = Trainer(TrainConfig(model=model, epochs=1, dtype="float64"), folder, dataset=data)
    x, y = trainer.x_train[:BATCH], trainer.y_train[:BATCH]
    trainer.criterion.forward(trainer.model.forward(x), y)
    trainer.model.backward(trainer.criterion.backward())
    ours = dict(zip((name for name, _ in trainer.model.named_arrays("params")), trainer.model.gradients(),
                    strict=True))
    reference = torch_model(model, trainer.model.state_dict(), torch.float64)
    torch.nn.functional.cross_entropy(reference(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    worst = 0.0
    for name, parameter in reference.named_parameters():
        expected = parameter.grad.numpy()
        worst = max(worst, float(np.max(np.abs(ours[name] - expected)) / np.max(np.abs(expected))))
    return worst


def reference_agreement(model: str, folder: Path) -> float:
    """Max over parameters of max |numpy - symdl| / max |symdl|: the hand-written gradients of one
    float32 batch against symdl's (the NumPy version must compute the same thing to be a reference)."""
    shutil.rmtree(folder, ignore_errors=True)
    trainer = Trainer(TrainConfig(model=model, epochs=1), folder, dataset=load_digits())
    x, y = trainer.x_train[:BATCH], trainer.y_train[:BATCH]
    trainer.criterion.forward(trainer.model.forward(x), y)
    trainer.model.backward(trainer.criterion.backward())
    _, grads = NUMPY_MODELS[model](trainer.model.state_dict()).gradients(x, y)
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
               for a, b in zip(grads, trainer.model.gradients(), strict=True))


def machine() -> str:
    versions = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    if has_torch():
        import torch

        versions.append(f"torch {torch.__version__}")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{platform.machine()}, {os.cpu_count()} cores (load average {load} when the table was written: "
            f"the cores are shared), {platform.system()} {platform.release()}, " + ", ".join(versions)
            + f", {_dt.date.today().isoformat()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--threads", default="1,2", help="torch's thread counts")
    parser.add_argument("--numpy-threads", type=int, default=1, help="BLAS threads of symdl and the NumPy version")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    lines = [("| model | threads | symdl ms/epoch | torch ms/epoch | numpy ms/epoch | symdl/torch | symdl/numpy "
              "| symdl/torch CPU | symdl/numpy CPU |"), "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models.split(","):
            agreement = reference_agreement(model, Path(scratch) / "check")
            if agreement > 1e-5:
                raise SystemExit(f"the hand-written {model} disagrees with symdl: relative gradient error {agreement:.1e}")
            for threads in (int(t) for t in args.threads.split(",")):
                times, cpu = time_epochs(model, threads, args.repeats, Path(scratch) / "run", args.numpy_threads)
                ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
                ratio = {k: f"{paired_ratio(times['symdl'], times[k]):.2f}" if k in times else "-" for k in ("torch", "numpy")}
                cpu_ratio = {k: f"{paired_ratio(cpu['symdl'], cpu[k]):.2f}" if k in cpu else "-"
                             for k in ("torch", "numpy")}
                lines.append(f"| {model} | {threads} | {ms['symdl']:.1f} | {ms.get('torch', float('nan')):.1f} | "
                             f"{ms['numpy']:.1f} | {ratio['torch']} | {ratio['numpy']} | {cpu_ratio['torch']} | "
                             f"{cpu_ratio['numpy']} |")
                print(lines[-1], flush=True)
        if has_torch():
            lines += ["", "Float64 gradients of one batch against torch (max |symdl - torch| / max |torch| over "
                      "each parameter): " + ", ".join(f"{m} {gradient_agreement(m, Path(scratch) / 'g'):.1e}"
                                                      for m in args.models.split(",")) + " (target <= 1e-12)."]
    lines.insert(0, f"Machine: {machine()}. Digits, batch {BATCH}, Adam lr={LR}, float32; median of {args.repeats} "
                 "epochs each, implementations alternating (ratios: median of the per-round ratios, of wall-clock time and, "
                 "in the CPU columns, of the process's CPU time); at T threads, "
                 "torch.set_num_threads(T) and symdl.kernels.set_num_threads(T) (as symdl train --threads T), BLAS of "
                 f"symdl and NumPy at {args.numpy_threads} thread(s); ratio below 1: symdl is faster.\n")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        
        write_table(args.markdown, "# Trainer benchmark (`python scripts/bench_trainer.py`)\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
