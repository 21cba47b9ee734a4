"""NumPy evaluation of matrix expressions, random instances, and finite-difference checks.

A symbolic size is drawn per instance (2 to 5), so a derivative is checked at several sizes, not one.
Values are standard normal, except where the expression needs a domain: a variable under ``log``,
``sqrt``, ``det``, ``inv`` or in a denominator is drawn positive (a square matrix: symmetric positive
definite, :math:`A A^\\top / n + I`), and a variable declared a probability vector (``sum(y) = 1``) is
drawn from a Dirichlet distribution.

The check is entrywise central differences, :math:`(f(x + h e_i) - f(x - h e_i)) / 2h` with
:math:`h = 10^{-6} \\max(1, |x_i|)`, accepted when every entry agrees within
``atol + rtol * max|fd|`` (:data:`RTOL`, :data:`ATOL`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from symdl.steps.matrix import nodes as n

RTOL = 1e-5
ATOL = 1e-7


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


#: NumPy implementations of the elementwise functions (kink conventions as PyTorch: relu'(0) = 0).
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "sign": np.sign,
    "step": lambda x: (np.asarray(x) > 0).astype(float), "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda x: np.maximum(x, 0.0), "softplus": lambda x: np.logaddexp(x, 0.0), "sin": np.sin, "cos": np.cos,
    "silu": lambda x: x * _sigmoid(x), "leaky_relu": lambda x: np.where(np.asarray(x) > 0, x, 0.01 * np.asarray(x)),
}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / e.sum()


class Evaluator:
    """Evaluates a node on a binding of variables and sizes; ``override`` replaces a subexpression's value."""

    def __init__(self, values: Mapping[str, np.ndarray], sizes: Mapping[str, int],
                 override: Mapping[n.Node, np.ndarray] | None = None) -> None:
        self.values, self.sizes, self.override = values, sizes, override or {}
        self.cache: dict[n.Node, np.ndarray] = {}

    def dim(self, d: n.Dim) -> int:
        return d if isinstance(d, int) else int(self.sizes[d])

    def __call__(self, node: n.Node) -> np.ndarray:
        if node in self.override:
            return self.override[node]
        if node not in self.cache:
            self.cache[node] = getattr(self, f"_{type(node).__name__}")(node)
        return self.cache[node]

    def _Var(self, node: n.Var) -> np.ndarray:  # noqa: N802 - named after the node class
        return np.asarray(self.values[node.name], dtype=float)

    def _Num(self, node: n.Num) -> np.ndarray:  # noqa: N802
        return np.asarray(node.value)

    def _Size(self, node: n.Size) -> np.ndarray:  # noqa: N802
        return np.asarray(float(self.sizes[node.name]))

    def _Named(self, node: n.Named) -> np.ndarray:  # noqa: N802
        return self(node.value)

    def _Ones(self, node: n.Ones) -> np.ndarray:  # noqa: N802
        return np.ones(tuple(self.dim(d) for d in node.dims))

    def _Eye(self, node: n.Eye) -> np.ndarray:  # noqa: N802
        return np.eye(self.dim(node.n))

    def _Add(self, node: n.Add) -> np.ndarray:  # noqa: N802
        return self(node.a) + self(node.b)

    def _Sub(self, node: n.Sub) -> np.ndarray:  # noqa: N802
        return self(node.a) - self(node.b)

    def _Neg(self, node: n.Neg) -> np.ndarray:  # noqa: N802
        return -self(node.a)

    def _Mul(self, node: n.Mul) -> np.ndarray:  # noqa: N802
        return self(node.a) * self(node.b)

    def _Div(self, node: n.Div) -> np.ndarray:  # noqa: N802
        return self(node.a) / self(node.b)

    def _Pow(self, node: n.Pow) -> np.ndarray:  # noqa: N802
        return self(node.a) ** node.p

    def _Func(self, node: n.Func) -> np.ndarray:  # noqa: N802
        return FUNCTIONS[node.name](self(node.a))

    def _MatMul(self, node: n.MatMul) -> np.ndarray:  # noqa: N802
        return np.asarray(self(node.a) @ self(node.b))

    def _T(self, node: n.T) -> np.ndarray:  # noqa: N802
        return self(node.a).T

    def _Outer(self, node: n.Outer) -> np.ndarray:  # noqa: N802
        return np.outer(self(node.a), self(node.b))

    def _Diag(self, node: n.Diag) -> np.ndarray:  # noqa: N802
        return np.diag(self(node.a))

    def _Trace(self, node: n.Trace) -> np.ndarray:  # noqa: N802
        return np.asarray(np.trace(self(node.a)))

    def _Det(self, node: n.Det) -> np.ndarray:  # noqa: N802
        return np.asarray(np.linalg.det(self(node.a)))

    def _Inv(self, node: n.Inv) -> np.ndarray:  # noqa: N802
        return np.linalg.inv(self(node.a))

    def _Sum(self, node: n.Sum) -> np.ndarray:  # noqa: N802
        return np.asarray(np.sum(self(node.a), axis=node.axis))

    def _Norm(self, node: n.Norm) -> np.ndarray:  # noqa: N802
        return np.asarray(np.linalg.norm(self(node.a)))

    def _Softmax(self, node: n.Softmax) -> np.ndarray:  # noqa: N802
        return _softmax(self(node.a))

    def _LogSumExp(self, node: n.LogSumExp) -> np.ndarray:  # noqa: N802
        z = self(node.a)
        return np.asarray(np.max(z) + np.log(np.sum(np.exp(z - np.max(z)))))


def evaluate(node: n.Node, values: Mapping[str, np.ndarray], sizes: Mapping[str, int] | None = None) -> np.ndarray:
    """The value of ``node`` with variables bound to ``values`` and named sizes to ``sizes``.

    A named size not in ``sizes`` is read off the value of a variable declared with it (``X=n,d``).
    """
    known = dict(sizes or {})
    for var in node.walk():
        if isinstance(var, n.Var) and var.name in values:
            for dim, actual in zip(var.dims, np.shape(values[var.name]), strict=False):
                if isinstance(dim, str):
                    known.setdefault(dim, int(actual))
    return Evaluator(values, known)(node)


# ----------------------------------------------------------------------------------------------- instances
@dataclass(frozen=True)
class Instance:
    """A random binding: the sizes and the variables' values."""

    sizes: dict[str, int]
    values: dict[str, np.ndarray]


def positive_names(expr: n.Node) -> set[str]:
    """Variables that need positive (or positive-definite) values: under log, sqrt, det, inv or a denominator."""
    names: set[str] = set()
    for node in expr.walk():
        inner: n.Node | None = None
        if isinstance(node, n.Func) and node.name in ("log", "sqrt"):
            inner = node.a
        elif isinstance(node, (n.Det, n.Inv)):
            inner = node.a
        elif isinstance(node, n.Div):
            inner = node.b
        elif isinstance(node, n.Pow) and (node.p < 0 or not float(node.p).is_integer()):
            inner = node.a
        if inner is not None:
            names |= {v.name for v in inner.walk() if isinstance(v, n.Var)}
    return names


def draw(expr: n.Node, shapes: Mapping[str, n.Shape], rng: np.random.Generator,
         simplex: frozenset[str] = frozenset(), positive: set[str] | None = None,
         symmetric: frozenset[str] = frozenset()) -> Instance:
    """A random instance of every declared variable (domains as in the module docstring; the matrices named in
    ``symmetric`` drawn symmetric)."""
    sizes = {d: int(rng.integers(2, 6)) for shape in shapes.values() for d in shape if isinstance(d, str)}
    positive = positive_names(expr) if positive is None else positive
    values: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        dims = tuple(d if isinstance(d, int) else sizes[d] for d in shape)
        if name in simplex:
            values[name] = rng.dirichlet(np.ones(int(np.prod(dims)))).reshape(dims)
        elif name in positive and len(dims) == 2 and dims[0] == dims[1]:
            a = rng.standard_normal(dims)
            values[name] = a @ a.T / dims[0] + np.eye(dims[0])
        elif name in positive:
            values[name] = rng.uniform(0.5, 2.0, dims)
        else:
            values[name] = rng.standard_normal(dims)
        if name in symmetric:
            values[name] = (values[name] + values[name].T) / 2
    return Instance(sizes, values)


def finite_difference(f: Callable[[dict[str, np.ndarray]], np.ndarray], values: dict[str, np.ndarray],
                      name: str) -> np.ndarray:
    """Central differences of ``f`` (array-valued allowed) in every entry of ``values[name]``.

    Returns an array of shape ``f.shape + values[name].shape`` (numerator layout).
    """
    base = np.asarray(values[name], dtype=float)
    out_shape = np.shape(f(values))
    grad = np.zeros(out_shape + base.shape)
    for index in np.ndindex(*base.shape):
        h = 1e-6 * max(1.0, abs(float(base[index])))
        plus, minus = base.copy(), base.copy()
        plus[index] += h
        minus[index] -= h
        diff = (np.asarray(f({**values, name: plus})) - np.asarray(f({**values, name: minus}))) / (2 * h)
        grad[(Ellipsis, *index)] = diff
    return grad


def close(derived: np.ndarray, reference: np.ndarray) -> tuple[bool, float]:
    """Whether ``derived`` matches finite differences, and the largest error relative to ``max|reference|``."""
    derived, reference = np.broadcast_to(np.asarray(derived, float), np.shape(reference)), np.asarray(reference, float)
    if not np.all(np.isfinite(derived)):
        return False, float("inf")
    error = float(np.max(np.abs(derived - reference))) if reference.size else 0.0
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return error <= ATOL + RTOL * scale, error / max(scale, 1e-12)
