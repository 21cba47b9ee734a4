"""``symdl derive FILE.py:f --check FILE.py:df``: the user's own gradient checked against ``f``.

Both functions are read through symdl's safe parser (never executed); ``df`` takes ``f``'s
parameters and returns the partial derivatives in parameter order (a tuple, or one value for a
single parameter). Both become NumPy functions (``lambdify`` of the parsed expressions) and
:func:`symdl.check.gradcheck` compares ``df`` with central differences of ``f`` at 7 points drawn
from [0.5, 2] (positive, so that logarithms and square roots are defined), seed 0.
"""

from __future__ import annotations

import ast

import numpy as np
import sympy as sp

from symdl.functions import to_textbook
from symdl.steps.api import DeriveError
from symdl.steps.python import _function_node, function_expression, load_function

__all__ = ["check_gradient", "load_gradient"]


def load_gradient(spec: str, params: list[str]) -> list[sp.Expr]:
    """The expressions ``df`` returns (its return may be a tuple), with its assignments substituted."""
    node, path = _function_node(spec)
    ret = node.body[-1] if node.body else None
    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple):
        pieces = []
        for element in ret.value.elts:
            single = ast.FunctionDef(name=node.name, args=node.args, body=[*node.body[:-1], ast.Return(element)],
                                     decorator_list=[], returns=None, type_comment=None, type_params=[])
            pieces.append(function_expression(single, path)[2])
        exprs = pieces
    else:
        exprs = [load_function(spec)[2]]
    names = [a.arg for a in node.args.args]
    if names != params:
        raise DeriveError(f"{spec}: takes ({', '.join(names)}); the gradient must take f's parameters "
                          f"({', '.join(params)})")
    if len(exprs) != len(params):
        raise DeriveError(f"{spec}: returns {len(exprs)} value(s); f has {len(params)} parameter(s)")
    return exprs


def check_gradient(f_spec: str, df_spec: str) -> object:
    """The gradient check report of ``df`` against ``f`` (truthy when it passed)."""
    from symdl.check import gradcheck

    name, params, f_expr, _ = load_function(f_spec)
    grads = load_gradient(df_spec, params)
    symbols = [sp.Symbol(p, real=True) for p in params]
    modules = ["scipy", "numpy"]
    f = sp.lambdify(symbols, to_textbook(f_expr), modules)
    parts = [sp.lambdify(symbols, to_textbook(g), modules) for g in grads]

    def vjp(v: np.ndarray, *xs: np.ndarray) -> tuple[np.ndarray, ...]:
        # f acts elementwise, so its Jacobian is diagonal: v^T J is v times each partial derivative
        return tuple(v * np.broadcast_to(np.asarray(p(*xs), dtype=float), np.shape(xs[0])) for p in parts)

    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0.5, 2.0, size=7) for _ in params]
    return gradcheck(lambda *xs: np.asarray(f(*xs), dtype=float) + 0 * xs[0], inputs, vjp, kind="vjp", names=params)
