"""Safe parsing of expression strings into SymPy, and a time-limited simplify.

SymPy's ``sympify`` and ``parse_expr`` run ``eval`` on their input, so a string
such as ``__import__('os').system(...)`` would execute. :func:`parse` never
evaluates user text: it parses it with :func:`ast.parse` and builds the SymPy
tree node by node from a whitelist:

* numbers (``int`` and ``float`` literals), names (variables, ``pi``, ``e``);
* ``+ - * / **``, unary ``+ -``; comparisons, ``and``/``or``/``not`` and
  ``a if cond else b`` or ``where(cond, a, b)`` for piecewise expressions;
* calls of the known functions (:data:`FUNCTIONS`: ``exp``, ``log``, ``sqrt``,
  ``abs``, ``max``/``min``, ``erf``, ``sigmoid``, ``softplus``, ... and every
  elementwise activation of the catalog, built from its definition at its
  default parameters), positional arguments only.

Everything else (attribute access, subscripts, lambdas, strings, keyword
arguments, unknown names, ...) is rejected with an :class:`ExpressionError`
naming what and where, by :func:`symdl.check.syntax.validate` before any
SymPy object exists. Caps keep hostile input cheap: at most
:data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of nesting (checked
on the raw text before :func:`ast.parse`, and on the tree), numeric
exponents up to :data:`MAX_EXPONENT` and exact numbers up to
:data:`MAX_DIGITS` digits, so ``9**9**9**9`` or ``x**(10**10)`` fail at once.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable
from functools import cache

import sympy as sp

from symdl.check.errors import ExpressionError
from symdl.check.syntax import (MAX_DEPTH, MAX_DIGITS, MAX_EXPONENT, MAX_LENGTH, called_names, normalized,
                                validate)
from symdl.functions import expm1, log1p, normal_cdf, sigmoid, softplus

__all__ = ["parse", "simplify_within", "FUNCTIONS", "ExpressionError", "MAX_LENGTH", "MAX_DEPTH", "MAX_EXPONENT"]


def _where(condition: sp.Basic, then: sp.Expr, otherwise: sp.Expr) -> sp.Expr:
    return sp.Piecewise((then, condition), (otherwise, True))


#: Functions by name, with their number of arguments (None: any number >= 1).
_BASIC: dict[str, tuple[Callable[..., sp.Expr], int | None]] = {
    "exp": (sp.exp, 1), "log": (sp.log, 1), "log1p": (log1p, 1), "expm1": (expm1, 1),
    "sqrt": (sp.sqrt, 1), "abs": (sp.Abs, 1), "sin": (sp.sin, 1), "cos": (sp.cos, 1), "tan": (sp.tan, 1),
    "sinh": (sp.sinh, 1), "cosh": (sp.cosh, 1), "tanh": (sp.tanh, 1), "asinh": (sp.asinh, 1),
    "atan": (sp.atan, 1), "erf": (sp.erf, 1), "sigmoid": (sigmoid, 1), "softplus": (softplus, 1),
    "normal_cdf": (normal_cdf, 1), "max": (sp.Max, None), "min": (sp.Min, None), "Max": (sp.Max, None),
    "Min": (sp.Min, None), "where": (_where, 3),
}
_CONSTANTS = {"pi": sp.pi, "e": sp.E}
#: Names the expression language reads as constants, not symbols.
CONSTANT_NAMES = frozenset(_CONSTANTS)


def _activation(definition: sp.Expr, symbol: sp.Symbol) -> Callable[[sp.Expr], sp.Expr]:
    return lambda arg: definition.xreplace({symbol: arg})


@cache
def functions() -> dict[str, tuple[Callable[..., sp.Expr], int | None]]:
    """:data:`_BASIC` plus each elementwise activation of the catalog (its definition at default parameters)."""
    from symdl.catalog import ACTIVATIONS_AND_LOSSES

    table = {}
    for op in ACTIVATIONS_AND_LOSSES.values():
        if op.family == "activation" and not op.traits.over_rows:
            defaults = {p.symbol: sp.Integer(p.default) if isinstance(p.default, int) else sp.Float(p.default)
                        for p in op.symbol_params}
            table[op.name] = (_activation(op.formula().definition.xreplace(defaults), op.inputs[0].symbol), 1)
    return {**table, **_BASIC}


FUNCTIONS = _BASIC  # the fixed part; ``functions()`` adds the catalog's activations


# --------------------------------------------------------------------------- the tree builder
_BINARY: dict[type, Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_COMPARE: dict[type, Callable[[sp.Expr, sp.Expr], sp.Basic]] = {
    ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge, ast.Eq: sp.Eq, ast.NotEq: sp.Ne,
}


class _Builder:
    """Builds SymPy from a whitelisted AST; one ``_<NodeClass>`` method per allowed node."""

    def __init__(self, variables: set[str] | None, table: dict[str, tuple[Callable[..., sp.Expr], int | None]]) -> None:
        self.variables = variables
        self.table = table
        self.symbols: dict[str, sp.Symbol] = {}

    def build(self, node: ast.AST) -> sp.Basic:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:  # validate() admits only the classes below; this is a second lock
            raise ExpressionError(f"{type(node).__name__} not allowed in expressions")
        return method(node)

    def _Expression(self, node: ast.Expression) -> sp.Basic:  # noqa: N802 - named after the AST class
        return self.build(node.body)

    def _Constant(self, node: ast.Constant) -> sp.Expr:  # noqa: N802
        return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)

    def _Name(self, node: ast.Name) -> sp.Expr:  # noqa: N802
        name = node.id
        if self.variables is not None and name in self.variables:
            return self.symbols.setdefault(name, sp.Symbol(name, real=True))
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in self.table:
            raise ExpressionError(f"{name!r} is a function; call it, as {name}(...)")
        if self.variables is not None or name.startswith("_"):
            known = ", ".join(sorted(self.variables or ())) or "none"
            raise ExpressionError(f"unknown name {name!r} (variables: {known}; constants: pi, e)")
        return self.symbols.setdefault(name, sp.Symbol(name, real=True))

    def _UnaryOp(self, node: ast.UnaryOp) -> sp.Basic:  # noqa: N802
        operand = self.build(node.operand)
        if isinstance(node.op, ast.USub):
            return -self._number(operand, node)
        if isinstance(node.op, ast.UAdd):
            return self._number(operand, node)
        if isinstance(node.op, ast.Not):
            return sp.Not(operand)
        raise ExpressionError(f"operator {type(node.op).__name__} not allowed (column {node.col_offset + 1})")

    def _BinOp(self, node: ast.BinOp) -> sp.Expr:  # noqa: N802
        if isinstance(node.op, ast.Pow):
            left, right = self._number(self.build(node.left), node), self._number(self.build(node.right), node)
            return self._power(left, right, node)
        # A left-associative chain (a flat sum of 999 terms is a 999-deep left spine) is walked in a loop,
        # not by recursion, which would exceed Python's recursion limit.
        spine = []
        while isinstance(node, ast.BinOp) and not isinstance(node.op, ast.Pow):
            spine.append(node)
            node = node.left
        value = self.build(node)
        for link in reversed(spine):
            operation = _BINARY.get(type(link.op))
            if operation is None:
                raise ExpressionError(f"operator {type(link.op).__name__} not allowed; use + - * / ** "
                                      f"(column {link.col_offset + 1})")
            value = operation(self._number(value, link), self._number(self.build(link.right), link))
        return value

    def _power(self, base: sp.Expr, exponent: sp.Expr, node: ast.AST) -> sp.Expr:
        where = f"(column {node.col_offset + 1})"
        if exponent.is_number:
            size = _magnitude(exponent)
            if not size <= MAX_EXPONENT:
                raise ExpressionError(f"exponent {size:.3g} is too large (limit {MAX_EXPONENT}) {where}")
            if base.is_number and base != 0:
                scale = _magnitude(base)
                if not size * abs(math.log10(scale)) <= MAX_DIGITS if 0 < scale < math.inf else True:
                    raise ExpressionError(f"power has more than {MAX_DIGITS} digits {where}")
        return base**exponent

    def _Compare(self, node: ast.Compare) -> sp.Basic:  # noqa: N802
        parts = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        relations = [_COMPARE[type(op)](a, b) for op, a, b in zip(node.ops, parts, parts[1:]) if type(op) in _COMPARE]
        if len(relations) != len(node.ops):
            raise ExpressionError(f"only < <= > >= == != compare (column {node.col_offset + 1})")
        return sp.And(*relations)

    def _BoolOp(self, node: ast.BoolOp) -> sp.Basic:  # noqa: N802
        values = [self.build(v) for v in node.values]
        return sp.And(*values) if isinstance(node.op, ast.And) else sp.Or(*values)

    def _IfExp(self, node: ast.IfExp) -> sp.Expr:  # noqa: N802
        return _where(self._condition(self.build(node.test), node), self._number(self.build(node.body), node),
                      self._number(self.build(node.orelse), node))

    def _Call(self, node: ast.Call) -> sp.Basic:  # noqa: N802 - validate() checked the name and the keywords
        name = node.func.id  # type: ignore[attr-defined]
        function, arity = self.table[name]
        args = [self.build(a) for a in node.args]
        if (arity is None and not args) or (arity is not None and len(args) != arity):
            raise ExpressionError(f"{name} takes {arity or 'one or more'} argument(s), got {len(args)}")
        if name == "where":
            self._condition(args[0], node)
        for a in args[name == "where":]:
            self._number(a, node)
        return function(*args)

    @staticmethod
    def _condition(value: sp.Basic, node: ast.AST) -> sp.Basic:
        # A Symbol is also a SymPy Boolean; a condition must be a comparison or a logical combination.
        if isinstance(value, sp.Expr) or not isinstance(value, sp.logic.boolalg.Boolean):
            raise ExpressionError(f"a number is used as a condition; compare it, e.g. x > 0 "
                                  f"(column {node.col_offset + 1})")
        return value

    @staticmethod
    def _number(value: sp.Basic, node: ast.AST) -> sp.Expr:
        if not isinstance(value, sp.Expr):
            raise ExpressionError(f"a condition is used as a number; use where(cond, a, b) "
                                  f"(column {node.col_offset + 1})")
        return value


def _magnitude(number: sp.Expr) -> float:
    """``|number|`` as a float, ``inf`` when it does not fit one."""
    try:
        return abs(complex(sp.N(number, 15)))
    except (OverflowError, TypeError, ValueError):
        return math.inf


def parse(text: str, variables: Iterable[str] | None = None) -> sp.Expr:
    """The SymPy expression for ``text``, built from its syntax tree without ``eval``.

    Args:
        text: the expression, e.g. ``"x*sigmoid(x)"``.
        variables: the allowed variable names (None: any name that is not a
            function or a constant becomes a real symbol).

    Raises:
        ExpressionError: the text breaks a rule or a cap (the message says which).
    """
    # the declared variables are normalised as the text is
    text = normalized(text) if isinstance(text, str) else text
    variables = None if variables is None else [normalized(v) for v in variables]
    tree = validate(text)
    # The catalog (and its import) is needed only when an activation is called.
    table = _BASIC if called_names(tree) <= set(_BASIC) else functions()
    validate(text, table)
    expr = _Builder(set(variables) if variables is not None else None, table).build(tree)
    if not isinstance(expr, sp.Expr):
        raise ExpressionError("expression is a condition, not a number; use where(cond, a, b)")
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise ExpressionError("expression is undefined (division by zero or an infinite constant)")
    return expr


# --------------------------------------------------------------------------- time-limited simplification
def simplify_within(expr: sp.Expr, seconds: float = 2.0) -> tuple[sp.Expr, bool]:
    """``sympy.simplify(expr)`` if it finishes within ``seconds`` of CPU time; else ``(expr, False)``.

    ``simplify`` can run for minutes on some inputs; :func:`symdl.proofs.proof.bounded` stops it
    in any thread.
    """
    from symdl.proofs.proof import bounded

    simplified, finished = bounded(lambda: sp.simplify(expr), seconds)
    return (simplified, True) if finished else (expr, False)
