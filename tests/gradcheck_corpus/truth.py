"""Ground truth for the corpus, from mpmath at 400 digits: the math of each function written again (not
the NumPy code under test), differentiated by mpmath's finite differences with a step of 1e-35, one-sided
(so a kink gives its two one-sided derivatives and a jump is seen as one)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mpmath as mp
import numpy as np

#: Working digits: F(500 + 1e-35) - F(500) for F = sigmoid is 1e-253 of F itself; 400 digits leave ~100 spare.
DIGITS = 400
STEP = mp.mpf("1e-35")
SELU_ALPHA = mp.mpf("1.6732632423543772848170429916717")
SELU_SCALE = mp.mpf("1.0507009873554804934193349852946")


def _gelu(x):
    c = mp.sqrt(2 / mp.pi)
    return x / 2 * (1 + mp.tanh(c * (x + mp.mpf("0.044715") * x**3)))


#: The math of each activation, by the corpus class's name (the *Wrong* classes share their base's truth).
FUNCTIONS: dict[str, Callable[[mp.mpf], mp.mpf]] = {
    "Sigmoid": lambda x: 1 / (1 + mp.exp(-x)),
    "Tanh": mp.tanh,
    "ReLU": lambda x: x if x > 0 else mp.mpf(0),
    "LeakyReLU": lambda x: x if x > 0 else mp.mpf("0.3") * x,
    "ELU": lambda x: x if x > 0 else mp.exp(x) - 1,
    "SELU": lambda x: SELU_SCALE * (x if x > 0 else SELU_ALPHA * (mp.exp(x) - 1)),
    "SoftPlus": lambda x: mp.log(1 + mp.exp(x)),
    "GELU": _gelu,
    "HardShrink": lambda x: x if abs(x) > mp.mpf("0.5") else mp.mpf(0),
}


@dataclass(frozen=True)
class Truth:
    """Per entry: the one-sided derivatives (low <= high), and whether the function differentiated jumps."""

    low: np.ndarray
    high: np.ndarray
    jump: np.ndarray


def _derivative(g: Callable[[mp.mpf], mp.mpf], x: mp.mpf) -> tuple[mp.mpf, mp.mpf, bool]:
    right = (g(x + STEP) - g(x)) / STEP
    left = (g(x) - g(x - STEP)) / STEP
    jump = abs(g(x + STEP) - g(x - STEP)) > mp.mpf("1e-20")
    return left, right, bool(jump)


def activation(name: str, order: int, points: np.ndarray) -> Truth:
    """The ``order``-th derivative of activation ``name`` at each point (float32 points taken exactly)."""
    f = FUNCTIONS[name]
    low, high, jump = [], [], []
    with mp.workdps(DIGITS):
        if order == 1:
            g = f
        else:  # the first derivative, itself by a (two-sided, far finer) difference away from any kink
            def g(x):
                return (f(x + STEP**2) - f(x - STEP**2)) / (2 * STEP**2)
        for x in points.astype(np.float64).ravel():
            left, right, jumps = _derivative(g, mp.mpf(float(x)))
            low.append(float(min(left, right)))
            high.append(float(max(left, right)))
            jump.append(jumps)
    shape = points.shape
    return Truth(np.reshape(low, shape), np.reshape(high, shape), np.reshape(jump, shape))


def scalar_gradient(loss: Callable[[list[list[mp.mpf]]], mp.mpf], arrays: Sequence[np.ndarray]) -> list[Truth]:
    """One-sided partial derivatives of ``loss`` (a function of mpmath nested lists) for every element of
    every array."""
    values = [[mp.mpf(float(v)) for v in a.astype(np.float64).ravel()] for a in arrays]
    out = []
    with mp.workdps(DIGITS):
        values = [[mp.mpf(v) for v in a] for a in values]
        for k, a in enumerate(arrays):
            low, high, jump = [], [], []
            for i in range(a.size):
                def g(t, k=k, i=i):
                    changed = [list(v) for v in values]
                    changed[k][i] = t
                    return loss(changed)
                left, right, jumps = _derivative(g, values[k][i])
                low.append(float(min(left, right)))
                high.append(float(max(left, right)))
                jump.append(jumps)
            out.append(Truth(np.reshape(low, a.shape), np.reshape(high, a.shape), np.reshape(jump, a.shape)))
    return out


# --------------------------------------------------------------------------- the layers' math in mpmath
def _matrix(flat: list, shape: tuple[int, ...]) -> list[list]:
    rows, cols = shape
    return [flat[r * cols:(r + 1) * cols] for r in range(rows)]


def affine(x, w, b, shapes):
    x, w = _matrix(x, shapes[0]), _matrix(w, shapes[1])
    return [[sum(x[r][k] * w[k][c] for k in range(len(w))) + b[c] for c in range(len(b))] for r in range(len(x))]


def affine_loss(v: np.ndarray, shapes) -> Callable:
    def loss(values):
        out = affine(*values, shapes)
        return sum(mp.mpf(float(v[r, c])) * out[r][c] for r in range(v.shape[0]) for c in range(v.shape[1]))
    return loss


def affine_relu_loss(v: np.ndarray, shapes) -> Callable:
    def loss(values):
        out = affine(*values, shapes)
        return sum(mp.mpf(float(v[r, c])) * max(out[r][c], 0) for r in range(v.shape[0]) for c in range(v.shape[1]))
    return loss


def batchnorm_loss(v: np.ndarray, shape, eps: float = 1e-5) -> Callable:
    n, d = shape

    def loss(values):
        x, gamma, beta = _matrix(values[0], shape), values[1], values[2]
        total = mp.mpf(0)
        for c in range(d):
            column = [x[r][c] for r in range(n)]
            mu = sum(column) / n
            var = sum((t - mu) ** 2 for t in column) / n
            for r in range(n):
                out = gamma[c] * (column[r] - mu) / mp.sqrt(var + mp.mpf(eps)) + beta[c]
                total += mp.mpf(float(v[r, c])) * out
        return total
    return loss


def softmax_loss(y: np.ndarray, shape) -> Callable:
    n, _ = shape

    def loss(values):
        x = _matrix(values[0], shape)
        return -sum(x[r][int(y[r])] - mp.log(sum(mp.exp(t) for t in x[r])) for r in range(n)) / n
    return loss
