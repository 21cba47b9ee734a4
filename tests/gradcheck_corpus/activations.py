"""Activation classes in the style of NumPy deep-learning libraries: ``fn``, ``grad``, ``grad2`` (elementwise).

Each class computes in the input's dtype, as such code does (``np.exp`` of a float32 array is float32).
The ``*Wrong*`` classes carry the kind of bug such code has; their docstrings say which.
"""

from __future__ import annotations

import numpy as np


class Sigmoid:
    def fn(self, z):
        return 1 / (1 + np.exp(-z))

    def grad(self, x):
        s = self.fn(x)
        return s * (1 - s)

    def grad2(self, x):
        s = self.fn(x)
        return s * (1 - s) * (1 - 2 * s)


class SigmoidNaiveGrad(Sigmoid):
    """exp(-x) / (1 + exp(-x))^2: the right formula, but exp overflows at x = -500 (inf / inf = nan)."""

    def grad(self, x):
        e = np.exp(-x)
        return e / (1 + e) ** 2


class SigmoidWrongGrad2(Sigmoid):
    """grad2 written as s (1 - s)(1 - s): the factor (1 - 2 s) mistyped."""

    def grad2(self, x):
        s = self.fn(x)
        return s * (1 - s) * (1 - s)


class Tanh:
    def fn(self, z):
        return np.tanh(z)

    def grad(self, x):
        return 1 - np.tanh(x) ** 2

    def grad2(self, x):
        t = np.tanh(x)
        return -2 * t * (1 - t**2)


class TanhWrongGrad2(Tanh):
    """grad2 as -2 tanh (1 - tanh)^2: the square moved."""

    def grad2(self, x):
        t = np.tanh(x)
        return -2 * t * (1 - t) ** 2


class ReLU:
    def fn(self, z):
        return np.clip(z, 0, np.inf)

    def grad(self, x):
        return (x > 0).astype(x.dtype)

    def grad2(self, x):
        return np.zeros_like(x)


class LeakyReLU:
    def __init__(self, alpha=0.3):
        self.alpha = alpha

    def fn(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def grad(self, x):
        return np.where(x > 0, 1.0, self.alpha).astype(x.dtype)

    def grad2(self, x):
        return np.zeros_like(x)


class LeakyReLUWrongAtZero(LeakyReLU):
    """grad(0) = 0: outside [alpha, 1], the one-sided derivatives at the kink."""

    def grad(self, x):
        return np.where(x > 0, 1.0, np.where(x == 0, 0.0, self.alpha)).astype(x.dtype)


class ELU:
    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fn(self, z):
        return np.where(z > 0, z, self.alpha * (np.exp(np.minimum(z, 0)) - 1))

    def grad(self, x):
        return np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0))).astype(x.dtype)

    def grad2(self, x):
        return np.where(x >= 0, 0.0, self.alpha * np.exp(np.minimum(x, 0))).astype(x.dtype)


class SELU:
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946

    def fn(self, z):
        return self.scale * np.where(z > 0, z, self.alpha * (np.exp(np.minimum(z, 0)) - 1))

    def grad(self, x):
        return (self.scale * np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0)))).astype(x.dtype)

    def grad2(self, x):
        return (self.scale * np.where(x > 0, 0.0, self.alpha * np.exp(np.minimum(x, 0)))).astype(x.dtype)


class SELUTruncatedAlpha(SELU):
    """grad with alpha typed as 1.67 (fn keeps the full constant): 0.2 % off for x < 0."""

    def grad(self, x):
        return (self.scale * np.where(x > 0, 1.0, 1.67 * np.exp(np.minimum(x, 0)))).astype(x.dtype)


class SELURoundedScale(SELU):
    """grad with the scale typed as 1.0507 (fn keeps the full constant): 9.4e-7 off everywhere, which is
    rounding in float32 and a bug in float64."""

    def grad(self, x):
        return (1.0507 * np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0)))).astype(x.dtype)


class SoftPlus:
    def fn(self, z):
        return np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0)

    def grad(self, x):
        return 1 / (1 + np.exp(-x))

    def grad2(self, x):
        s = 1 / (1 + np.exp(-x))
        return s * (1 - s)


class SoftPlusWrongGrad2(SoftPlus):
    """grad2 as sigmoid(x) * sigmoid(x): (1 - s) confused with s."""

    def grad2(self, x):
        s = 1 / (1 + np.exp(-x))
        return s * s


class GELU:
    """The tanh approximation (as in GPT-2 code)."""

    c = np.sqrt(2 / np.pi)

    def fn(self, z):
        return 0.5 * z * (1 + np.tanh(self.c * (z + 0.044715 * z**3)))

    def grad(self, x):
        t = np.tanh(self.c * (x + 0.044715 * x**3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * self.c * (1 + 3 * 0.044715 * x * x)

    def grad2(self, x):
        u = self.c * (x + 0.044715 * x**3)
        du = self.c * (1 + 3 * 0.044715 * x * x)
        t = np.tanh(u)
        s = 1 - t * t
        return s * du + 0.5 * x * (-2 * t * s * du * du + s * self.c * 6 * 0.044715 * x)


class GELUMixedDensity(GELU):
    """grad mixes in the exact GELU's density term x phi(x) for the tanh form's (about 2e-4 off)."""

    def grad(self, x):
        t = np.tanh(self.c * (x + 0.044715 * x**3))
        return 0.5 * (1 + t) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


class HardShrink:
    def __init__(self, lambd=0.5):
        self.lambd = lambd

    def fn(self, z):
        return np.where(np.abs(z) > self.lambd, z, 0.0).astype(z.dtype)

    def grad(self, x):
        return (np.abs(x) > self.lambd).astype(x.dtype)

    def grad2(self, x):
        return np.zeros_like(x)
