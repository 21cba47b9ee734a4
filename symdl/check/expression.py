"""NumPy functions from SymPy expressions, by walking the tree (no ``lambdify``, no ``exec``).

:func:`evaluate` computes an expression on arrays (real or complex, so the
complex-step mode works where the expression is analytic); every node class
it meets is looked up in :data:`NODES`, and an unknown one is an error, not a
guess. Imports SymPy: used by the CLI, never by ``import symdl.check``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import reduce

import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from symdl.check.errors import ExpressionError
from symdl.functions import normal_cdf, sigmoid, softplus

Value = np.ndarray | float | complex | bool


def _special(name: str) -> Callable[..., np.ndarray]:
    from scipy import special

    return getattr(special, name)


def _real(x: Value) -> bool:
    return np.asarray(x).dtype.kind != "c"


def _sigmoid(x: Value) -> Value:
    if _real(x):
        from symdl.kernels._runtime import sigmoid as stable

        return stable(np.asarray(x, dtype=np.result_type(x, np.float32)))
    return 1 / (1 + np.exp(-x))


def _softplus(x: Value) -> Value:
    return np.logaddexp(0, x) if _real(x) else np.log1p(np.exp(x))


def _floating(*values: Value) -> np.dtype | None:
    """The dtype floating arrays among ``values`` promote to (None: only scalars), so that
    ``np.where`` keeps float32 where Python-float branches would make it float64."""
    arrays = [v for v in values if isinstance(v, np.ndarray) and v.dtype.kind in "fc"]
    return np.result_type(*arrays) if arrays else None


def _where(condition: Value, then: Value, otherwise: Value, dtype: np.dtype | None) -> Value:
    return np.where(condition, np.asarray(then, dtype), np.asarray(otherwise, dtype))


def _heaviside(x: Value, at_zero: Value = 0.5) -> Value:
    dtype = _floating(x)
    return _where(np.greater(x, 0), 1.0, _where(np.less(x, 0), 0.0, at_zero, dtype), dtype)


def _power(base: Value, exponent: Value) -> Value:
    if isinstance(exponent, float) and exponent == 0.5:
        return np.sqrt(base)
    if isinstance(exponent, float) and exponent.is_integer() and abs(exponent) < 2**31:
        exponent = int(exponent)
        return 1 / np.power(base, -exponent) if exponent < 0 else np.power(base, exponent)
    return np.power(base, exponent)


def _piecewise(*pairs: tuple[Value, Value]) -> Value:
    dtype = _floating(*(value for value, _ in pairs))
    result = pairs[-1][0]
    for value, condition in reversed(pairs[:-1]):
        result = _where(condition, value, result, dtype)
    return result


#: NumPy implementation of each SymPy node class (arguments already evaluated).
NODES: dict[type, Callable[..., Value]] = {
    sp.Add: lambda *a: reduce(np.add, a), sp.Mul: lambda *a: reduce(np.multiply, a), sp.Pow: _power,
    sp.exp: np.exp, sp.log: np.log, sp.sin: np.sin, sp.cos: np.cos, sp.tan: np.tan, sp.sinh: np.sinh,
    sp.cosh: np.cosh, sp.tanh: np.tanh, sp.asinh: np.arcsinh, sp.atan: np.arctan, sp.Abs: np.abs,
    sp.sign: np.sign, sp.erf: lambda x: _special("erf")(x), sp.Max: lambda *a: reduce(np.maximum, a),
    sp.Min: lambda *a: reduce(np.minimum, a), sp.Heaviside: _heaviside, sp.sec: lambda x: 1 / np.cos(x),
    sp.csc: lambda x: 1 / np.sin(x), sp.cot: lambda x: 1 / np.tan(x), sp.sech: lambda x: 1 / np.cosh(x),
    sp.csch: lambda x: 1 / np.sinh(x), sp.coth: lambda x: 1 / np.tanh(x),
    log1p: np.log1p, expm1: np.expm1, sigmoid: _sigmoid, softplus: _softplus,
    normal_cdf: lambda x: _special("ndtr")(x), sp.UnevaluatedExpr: lambda x: x,
    sp.StrictLessThan: np.less, sp.LessThan: np.less_equal, sp.StrictGreaterThan: np.greater,
    sp.GreaterThan: np.greater_equal, sp.Equality: np.equal, sp.Unequality: np.not_equal,
    sp.And: lambda *a: reduce(np.logical_and, a), sp.Or: lambda *a: reduce(np.logical_or, a),
    sp.Not: np.logical_not,
}


def evaluate(expr: sp.Basic, values: Mapping[sp.Symbol, Value]) -> Value:
    """``expr`` with each symbol replaced by its array (broadcasting), computed with NumPy.

    Floating-point warnings are silenced: a non-finite value is a result to
    judge (``x/abs(x)`` at 0), not a message on the terminal.
    """
    with np.errstate(all="ignore"):
        return _evaluate(expr, values)


def _evaluate(expr: sp.Basic, values: Mapping[sp.Symbol, Value]) -> Value:
    if expr in values:
        return values[expr]
    if isinstance(expr, sp.Symbol):
        raise ExpressionError(f"no value for {expr.name!r}")
    if expr is sp.true or expr is sp.false:
        return bool(expr)
    if isinstance(expr, sp.Piecewise):
        return _piecewise(*((_evaluate(e, values), _evaluate(c, values)) for e, c in expr.args))
    if expr.is_Number or isinstance(expr, sp.NumberSymbol):
        return float(expr)  # a Python float is a weak scalar: float32 arrays stay float32
    if expr.is_number and expr.is_real is not False and not expr.free_symbols:
        return float(sp.N(expr, 17))
    node = NODES.get(type(expr)) or next((v for k, v in NODES.items() if isinstance(expr, k)), None)
    if node is None:
        raise ExpressionError(f"cannot evaluate {type(expr).__name__} numerically: {expr}")
    return node(*(_evaluate(a, values) for a in expr.args))


def _sum_to_shape(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to an input's shape (the adjoint of broadcasting)."""
    value = np.asarray(value)
    extra = value.ndim - len(shape)
    if extra > 0:
        value = value.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and value.shape[i] != 1)
    return value.sum(axis=axes, keepdims=True) if axes else value


class ExpressionFunction:
    """An expression as ``f(*arrays)`` (elementwise, broadcasting) with the VJP of given derivatives.

    ``derivatives`` maps each differentiated symbol to an expression for
    :math:`\\partial f / \\partial v` (SymPy's, or a hand-written one to check);
    other symbols are inputs without a gradient (None in the VJP).
    """

    def __init__(self, expr: sp.Expr, symbols: list[sp.Symbol], derivatives: Mapping[sp.Symbol, sp.Expr]) -> None:
        self.expr, self.symbols, self.derivatives = expr, symbols, dict(derivatives)

    def _values(self, arrays: tuple[np.ndarray, ...]) -> dict[sp.Symbol, np.ndarray]:
        return dict(zip(self.symbols, arrays))

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        values = self._values(arrays)
        shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
        dtype = np.result_type(*arrays)
        return np.broadcast_to(np.asarray(evaluate(self.expr, values), dtype=dtype), shape)

    def vjp(self, g: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray | None, ...]:
        values = self._values(arrays)
        grads: list[np.ndarray | None] = []
        for symbol, x in zip(self.symbols, arrays):
            if symbol not in self.derivatives:
                grads.append(None)
                continue
            slope = np.asarray(evaluate(self.derivatives[symbol], values), dtype=np.result_type(g, x))
            with np.errstate(all="ignore"):  # 0 * inf where the derivative is not finite: judged, not warned
                grads.append(_sum_to_shape(g * slope, np.shape(x)).astype(np.result_type(g, x)))
        return tuple(grads)
