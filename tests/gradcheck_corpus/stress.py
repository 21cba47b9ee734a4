"""A random stress run of the gradient checker against mpmath ground truth (not part of the test suite).

    python -m tests.gradcheck_corpus.stress SEED SECONDS

draws activation checks (first and second order, float32 and float64, every mode) at random points:
normal at random scales from 1e-8 to 500, points 1e-9 to 1e-3 from the kink, the extremes
(+-10 ... +-500, 0), uniform in [-5, 5]; classifies each case from the truth exactly as
tests/test_check_corpus_real.py does, and prints the counts (label, passed) and the false alarms and
misses by kind of point set. docs/gradcheck.md quotes a run of it.
"""

from __future__ import annotations

import collections
import sys
import time
import warnings

import numpy as np

from symdl.check import gradcheck, gradgradcheck
from tests.gradcheck_corpus import activations as acts
from tests.gradcheck_corpus import truth as gt

ACTIVATIONS = [(acts.Sigmoid(), "Sigmoid"), (acts.Tanh(), "Tanh"), (acts.ELU(), "ELU"), (acts.SELU(), "SELU"),
               (acts.SoftPlus(), "SoftPlus")]
RIGHT = {np.float64: 1e-10, np.float32: 1e-5}
WRONG = {np.float64: 1e-7, np.float32: 1e-4}


def draw(rng: np.random.Generator) -> np.ndarray:
    size, kind = int(rng.integers(1, 6)), int(rng.integers(4))
    if kind == 0:
        return rng.standard_normal(size) * 10 ** rng.uniform(-8, 2.7)
    if kind == 1:
        return np.sign(rng.standard_normal(size)) * 10 ** rng.uniform(-9, -3, size)
    if kind == 2:
        return rng.choice([-500, -100, -30, -10, 10, 30, 100, 500, 0.0], size) * 1.0
    return rng.uniform(-5, 5, size)


def label(user: np.ndarray, truth: gt.Truth, dtype: type) -> str:
    a = user.astype(np.float64)
    with np.errstate(all="ignore"):
        distance = np.maximum(np.maximum(truth.low - a, a - truth.high), 0)
        held = 4 * np.spacing(np.abs(np.clip(a, truth.low, truth.high)).astype(dtype)).astype(np.float64)
    error = np.maximum(distance - held, 0)
    scale = np.max(np.maximum(np.abs(truth.low), np.abs(truth.high)))
    e = np.max(error) / scale if scale > 0 else (np.inf if np.max(error) > 0 else 0.0)
    return "right" if e <= RIGHT[dtype] else ("wrong" if e >= WRONG[dtype] else "between")


def kind_of(x: np.ndarray) -> str:
    size = np.abs(x.astype(np.float64))
    return "all within 1e-3 of 0" if size.max() < 1e-3 else ("all beyond 4" if size.min() > 4 else "other")


def main(seed: int, seconds: float) -> None:
    rng = np.random.default_rng(seed)
    counts: collections.Counter = collections.Counter()
    wrong: collections.Counter = collections.Counter()
    start = time.time()
    while time.time() - start < seconds:
        act, base = ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]
        dtype = (np.float32, np.float64)[int(rng.integers(2))]
        x, order = draw(rng).astype(dtype), 1 + int(rng.integers(2))
        mode = ("full", "fast", "complex", "richardson")[int(rng.integers(4))]
        with np.errstate(all="ignore"):
            if order == 1:
                report = gradcheck(lambda z: np.sum(act.fn(z), axis=-1), x, lambda z: act.grad(z), mode=mode,
                                   kind="grad")
                user = act.grad(x)
            else:
                report = gradgradcheck(lambda z: act.grad(z), lambda v, z: v * act.grad2(z), x, mode=mode)
                user = act.grad2(x)
        truth = gt.activation(base, order, x)
        if truth.jump.any():
            continue
        found = label(user, truth, dtype)
        counts[(found, report.passed)] += 1
        if (found == "right") != report.passed and found != "between":
            what = "false alarm" if found == "right" else "miss"
            wrong[(what, np.dtype(dtype).name, kind_of(x))] += 1
            if what == "false alarm":
                print(what, base, np.dtype(dtype).name, order, mode, x.tolist())
    print("(label, passed):", dict(counts))
    for key, value in sorted(wrong.items(), key=lambda kv: -kv[1]):
        print(value, key)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main(int(sys.argv[1]), float(sys.argv[2]))
