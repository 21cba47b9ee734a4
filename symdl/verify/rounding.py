"""One step of an update rule with a running bound on its rounding error (the reference for kernels).

A kernel is not judged by how close it comes to one particular float evaluation of its rule,
since any other order of the same operations (a fused multiply-add, a scalar folded
elsewhere) rounds differently, and where the rule's inputs cancel (Adam's ``m + (1 - b1)(d - m)``
with ``d`` near ``m``; centered RMSprop's ``v - gbar^2``) the difference between two good
evaluations is many ulps of the result. It is judged against the truth, the step evaluated in
80-bit long double from the same float inputs (11 more bits than float64), with the tolerance
a *running error analysis* (Wilkinson's) gives for evaluating the rule's operations in floats
of unit roundoff ``u``: a bound ``e`` on each intermediate's error, carried through every
operation,

.. math::

    e(a \\pm b) = e_a + e_b + u (|a| + |b|), \\qquad
    e(a b) = |b| e_a + |a| e_b + e_a e_b + u |a b|, \\qquad
    e(1 / a) = \\frac{e_a}{|a| (|a| - e_a)} + \\frac{u}{|a|}, \\qquad
    e(\\sqrt a) = \\max(\\sqrt{a + e_a} - \\sqrt a, \\sqrt a - \\sqrt{(a - e_a)^+}) + u \\sqrt a,

(``1 / a`` unbounded when the interval around ``a`` holds 0), so that a sum of large terms
carries their rounding into a small result. The inputs (the parameter, its gradient and
state, the hyper-parameters) are exact: one step starts from them.
Every rounding of an evaluation in another order is bounded by ``u`` times an intermediate of
the same size, so :data:`ORDER_SLACK` times the bound covers any reasonable order; a wrong
formula misses it by orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp

from symdl.catalog.optimizers import GRAD, PARAM, STEP, UpdateRule

#: The bound is for the catalog's order of operations; a kernel may order them otherwise.
ORDER_SLACK = 2.0

Extended = np.longdouble
Pair = tuple[np.ndarray, np.ndarray]  # (value, error bound), long double


def _exact(value: object) -> Pair:
    number = np.asarray(value, dtype=Extended)
    return number, np.zeros_like(number)


def _add(args: list[Pair], u: float) -> Pair:
    value = sum(v for v, _ in args)
    # summed left to right, each partial sum rounded: bounded by u times the sum of magnitudes
    magnitude = sum(np.abs(v) for v, _ in args)
    return value, sum(e for _, e in args) + u * (len(args) - 1) * magnitude


def _mul(args: list[Pair], u: float) -> Pair:
    value, error = args[0]
    for v, e in args[1:]:
        value, error = value * v, np.abs(v) * error + np.abs(value) * e + error * e + u * np.abs(value * v)
    return value, error


def _reciprocal(v: np.ndarray, e: np.ndarray, u: float) -> Pair:
    """``1 / a`` for ``a`` known to within ``e``: infinite when the interval holds 0."""
    margin = np.abs(v) - e
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 1 / v
        spread = np.where(margin > 0, e / (np.abs(v) * np.where(margin > 0, margin, 1)), np.inf)
    return value, spread + u * np.abs(value)


def _square_root(v: np.ndarray, e: np.ndarray, u: float) -> Pair:
    """``sqrt(a)`` for ``a >= 0`` known to within ``e`` (not linearised: a may be near 0)."""
    value = np.sqrt(v)
    spread = np.maximum(np.sqrt(v + e) - value, value - np.sqrt(np.maximum(v - e, 0)))
    return value, spread + u * value


def _power(base: Pair, exponent: sp.Expr, u: float) -> Pair:
    v, e = base
    if exponent == -1:
        return _reciprocal(v, e, u)
    if exponent == sp.Rational(1, 2):
        return _square_root(v, e, u)
    if exponent.is_Integer and exponent > 0:
        return _mul([base] * int(exponent), u)
    if exponent.is_Rational and exponent < 0:
        return _power(_power(base, -exponent, u), sp.S.NegativeOne, u)
    raise NotImplementedError(f"no rounding bound for the power {exponent}")


def _scalar_power(base: Pair, exponent: Pair, u: float) -> Pair:
    """``beta ** step`` and the like: Python's pow on exact scalars, within an ulp."""
    value = base[0] ** exponent[0]
    return value, 2 * u * np.abs(value)


def _sign(arg: Pair) -> Pair:
    v, e = arg
    return np.sign(v), np.where(np.abs(v) > e, 0.0, 2.0).astype(Extended)  # may flip only within the error


def _maximum(args: list[Pair]) -> Pair:
    value, error = args[0]
    for v, e in args[1:]:
        value, error = np.maximum(value, v), np.maximum(error, e)
    return value, error


def _absolute(arg: Pair) -> Pair:
    return np.abs(arg[0]), arg[1]


class _Evaluator:
    """Evaluate SymPy expressions on (value, bound) pairs, given the symbols' pairs."""

    def __init__(self, env: dict[sp.Symbol, Pair], u: float) -> None:
        self.env, self.u = env, u
        self.table: dict[type, Callable[[sp.Expr], Pair]] = {
            sp.Add: lambda e: _add([self(a) for a in e.args], self.u),
            sp.Mul: lambda e: _mul([self(a) for a in e.args], self.u),
            sp.Pow: self._pow,
            sp.Abs: lambda e: _absolute(self(e.args[0])),
            sp.Max: lambda e: _maximum([self(a) for a in e.args]),
            sp.sign: lambda e: _sign(self(e.args[0])),
            sp.Piecewise: self._piecewise,
        }

    def __call__(self, expr: sp.Expr) -> Pair:
        if expr.is_Symbol:
            return self.env[expr]
        if expr.is_Number:
            return _exact(float(expr))
        for kind, rule in self.table.items():
            if isinstance(expr, kind):
                return rule(expr)
        raise NotImplementedError(f"no rounding bound for {type(expr).__name__}: {expr}")

    def _pow(self, expr: sp.Pow) -> Pair:
        base, exponent = expr.args
        if exponent.is_Number:
            return _power(self(base), exponent, self.u)
        return _scalar_power(self(base), self(exponent), self.u)

    def _piecewise(self, expr: sp.Piecewise) -> Pair:
        for value, condition in expr.args:
            if self.truth(condition):
                return self(value)
        raise ValueError(f"no branch of {expr} holds")

    def truth(self, condition: sp.Basic) -> bool:
        """A branch condition on scalar hyper-parameters, scalar states and the step."""
        values = {}
        for symbol in condition.free_symbols:
            value = np.asarray(self.env[symbol][0])
            if np.any(value != value.flat[0]):
                raise NotImplementedError(f"a branch condition on an array: {condition}")
            values[symbol] = sp.true if value.dtype == bool and value.flat[0] else (
                sp.false if value.dtype == bool else sp.Float(float(value.flat[0])))
        return bool(condition.xreplace(values))


def bounded_step(rule: UpdateRule, hypers: dict[str, object], param: np.ndarray, state: dict[str, object] | None,
                 grad: np.ndarray, step: int, u: float) -> Pair:
    """The parameter after one step from ``param`` and ``state`` (the initial state if None),
    evaluated in long double, and the running bound on a float evaluation's rounding error."""
    values = rule.symbol_values(hypers)
    env: dict[sp.Symbol, Pair] = {s: ((np.asarray(v), np.zeros(())) if isinstance(v, bool) else _exact(float(v)))
                                  for s, v in values.items()}
    for item in rule.states:
        start = float(item.init.xreplace(values)) if state is None else state[item.name]
        env[item.symbol] = _exact(start if item.scalar else np.broadcast_to(start, np.shape(param)))
    env[PARAM], env[GRAD], env[STEP] = _exact(param), _exact(grad), _exact(float(step))
    evaluate = _Evaluator(env, u)
    for target, expr in rule.steps:
        value, error = evaluate(expr)
        env[target] = (value, error) if any(i.symbol == target and i.scalar for i in rule.states) else (
            np.broadcast_to(value, np.shape(param)), np.broadcast_to(error, np.shape(param)))
    return env[PARAM]
