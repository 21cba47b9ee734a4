r"""Named rewrites that move a derived matrix result to the form a textbook prints, each one verified.

The reverse-mode derivation (:mod:`.engine`) ends at a correct but mechanical form, e.g. for the Rayleigh
quotient :math:`R(x) = x^\top A x / x^\top x`::

    ((A.T + A) @ x) / (x @ x) - 2 * (A.T @ x @ x) / (x @ x)**2 * x

A textbook writes :math:`\frac{(A + A^\top)x - 2R\,x}{x^\top x}`, and for a symmetric A
:math:`\frac{2}{x^\top x}(A x - R\,x)`. Each :class:`Rule` here is one identity, valid for every value
(or under a stated assumption), applied wherever it matches; :func:`rewrite` applies the rules in order and
records a :class:`RewriteStep` for each one that changed the result, with the two sides compared
numerically on random instances (independent sizes; instances satisfying the assumptions for the assumption
stage). A step whose sides differ is marked failed and the derivation is not verified.

Rules (general): name the function's own value (``a / b**2 = (a / b) / b``, and ``a / b`` is f: call it R),
a common scalar divisor taken out of a sum, a scalar divisor moved out of an elementwise product, the sum of
rows through a product (``sum(R @ M, 0) = M.T @ sum(R, 0)``), the transpose of a sum, sums ordered
``A + A.T``, a quadratic form written ``x @ A @ x``, a number over a divisor in front (``2 / N * ...``).
Under ``symmetric(A)``: :math:`A^\top = A`, :math:`A^{-\top} = A^{-1}`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from symdl.steps.matrix import nodes as n
from symdl.steps.matrix.simplify import _rebuild, _terms, simplify

__all__ = ["Rule", "RewriteStep", "rewrite", "GENERAL", "symmetric_rules", "name_of_value", "same_value"]

MAX_PASSES = 20


@dataclass(frozen=True)
class Rule:
    """One identity: ``match(node)`` gives the rewritten node or None; ``tidy``: simplify afterwards."""

    rule: str
    words: str
    match: Callable[[n.Node], n.Node | None]
    tidy: bool = True


@dataclass(frozen=True)
class RewriteStep:
    """One applied rule: the result ``before`` and ``after`` (with named subexpressions), and its check.

    Attributes:
        stage: ``""`` for an identity valid for every value, else the assumption it uses (``symmetric(A)``).
        ok: both sides agree on every random instance (relative error at most 1e-9).
        error: the largest relative difference seen.
    """

    rule: str
    words: str
    before: n.Node
    after: n.Node
    stage: str
    ok: bool
    error: float


def _apply(node: n.Node, match: Callable[[n.Node], n.Node | None]) -> n.Node:
    """``match`` applied bottom up, once per node."""
    args = node.args
    if args and not isinstance(node, n.Named):
        node = n.rebuild(node, [_apply(a, match) for a in args])
    found = match(node)
    return node if found is None else found


# ----------------------------------------------------------------------------------------------- the rules
def name_of_value(expr: n.Node) -> tuple[str, str]:
    """The name a textbook gives the function's value, and the words: ``R``, the Rayleigh quotient, for
    ``x @ A @ x / (x @ x)``; ``f`` otherwise."""
    taken = {v.name for v in expr.walk() if isinstance(v, (n.Var, n.Size))}
    if isinstance(expr, n.Div) and isinstance(expr.b, n.MatMul) and expr.b.a == expr.b.b and "R" not in taken and \
            isinstance(expr.a, n.MatMul) and isinstance(expr.a.a, n.MatMul) and expr.a.a.a == expr.a.b == expr.b.a:
        return "R", "the Rayleigh quotient, f itself"
    return ("f" if "f" not in taken else "f_value"), "the function's value"


def _name_value(expr: n.Node) -> Callable[[n.Node], n.Node | None]:
    name, _ = name_of_value(expr)
    target = simplify(expr)

    def match(node: n.Node) -> n.Node | None:  # a / b**2 with a / b = f  ->  f / b
        if isinstance(node, n.Div) and isinstance(node.b, n.Pow) and node.b.p == 2.0 and node.is_scalar and \
                simplify(n.Div(node.a, node.b.a)) == target:
            return n.Div(n.Named(name, expr), node.b.a)
        return None
    return match


def _divided(term: n.Node) -> tuple[n.Node, n.Node] | None:
    """``(a, s)`` when the term is ``a / s`` for a scalar s, possibly inside a product (``(a / s) * b``)."""
    if isinstance(term, n.Div) and term.b.is_scalar:
        return term.a, term.b
    if isinstance(term, n.Mul):
        sides = ((term.a, term.b, lambda x, o: n.Mul(x, o)), (term.b, term.a, lambda x, o: n.Mul(o, x)))
        for inner, other, make in sides:
            found = _divided(inner)
            if found is not None and (inner.is_scalar or other.is_scalar):
                return make(found[0], other), found[1]
    return None


def _common_divisor(node: n.Node) -> n.Node | None:  # a / s + b / s = (a + b) / s
    if not isinstance(node, (n.Add, n.Sub)):
        return None
    terms = _terms(node)
    parts = [_divided(t) for _, t in terms]
    if len(terms) < 2 or any(p is None for p in parts) or len({p[1] for p in parts}) != 1:  # type: ignore[index]
        return None
    inner = _rebuild([(c, p[0]) for (c, _), p in zip(terms, parts, strict=True)])  # type: ignore[index]
    return None if inner is None else n.Div(inner, parts[0][1])  # type: ignore[index]


def _divisor_out(node: n.Node) -> n.Node | None:  # (a / s) * m = (a * m) / s and sum(a / s) = sum(a) / s
    if isinstance(node, n.Mul) and isinstance(node.a, n.Div) and node.a.b.is_scalar and not node.a.a.is_scalar:
        return n.Div(n.Mul(node.a.a, node.b), node.a.b)
    if isinstance(node, n.Sum) and isinstance(node.a, n.Div) and node.a.b.is_scalar:
        return n.Div(n.Sum(node.a.a, node.axis), node.a.b)
    return None


def _sum_rows(node: n.Node) -> n.Node | None:  # sum(R @ M, 0) = M.T @ sum(R, 0)
    if isinstance(node, n.Sum) and node.axis == 0 and isinstance(node.a, n.MatMul) and len(node.a.a.shape) == 2 \
            and len(node.a.b.shape) == 2:
        return n.MatMul(n.T(node.a.b), n.Sum(node.a.a, 0))
    return None


def _transpose_of_sum(node: n.Node) -> n.Node | None:  # (A + B).T = A.T + B.T
    if isinstance(node, n.T) and isinstance(node.a, (n.Add, n.Sub)) and node.a.a.shape == node.a.b.shape:
        return type(node.a)(n.T(node.a.a), n.T(node.a.b))
    return None


def _order_sum(node: n.Node) -> n.Node | None:  # A.T + A = A + A.T
    if isinstance(node, n.Add) and isinstance(node.a, n.T) and node.a.a == node.b:
        return n.Add(node.b, node.a)
    return None


def _quadratic_form(node: n.Node) -> n.Node | None:  # (A.T @ x) @ x = x @ A @ x
    if isinstance(node, n.MatMul) and isinstance(node.a, n.MatMul) and isinstance(node.a.a, n.T) and \
            len(node.b.shape) == 1 and node.a.b == node.b:
        return n.MatMul(n.MatMul(node.b, node.a.a.a), node.b)
    return None


def _scalar_front(node: n.Node) -> n.Node | None:  # c * (a / s) = (c / s) * a, for a number c and a scalar s
    if isinstance(node, n.Mul) and isinstance(node.a, n.Num) and isinstance(node.b, n.Div) and \
            node.b.b.is_scalar and not isinstance(node.b.a, n.Num):
        return n.Mul(n.Div(node.a, node.b.b), node.b.a)
    return None


def general_rules(expr: n.Node) -> list[Rule]:
    """The assumption-free rules, in the order they are tried."""
    name, words = name_of_value(expr)
    return [
        Rule("name_value", f"a / b^2 = (a / b) / b, and a / b is f: name {name} = {n.Node.__str__(expr)} ({words})",
             _name_value(expr)),
        Rule("common_divisor", "a / s + b / s = (a + b) / s: take the common scalar divisor out", _common_divisor),
        Rule("divisor_out", "(a / s) * m = (a * m) / s, sum(a / s) = sum(a) / s: a scalar divisor taken out",
             _divisor_out),
        Rule("sum_of_rows", "sum_i (R M)_i = M^T sum_i R_i: sum(R @ M, 0) = M.T @ sum(R, 0)", _sum_rows),
        Rule("transpose_of_sum", "(A + B)^T = A^T + B^T", _transpose_of_sum),
        Rule("order_terms", "A^T + A = A + A^T (terms in textbook order)", _order_sum, tidy=False),
        Rule("quadratic_form", "(A^T x)^T x = x^T A x", _quadratic_form, tidy=False),
        Rule("scalar_in_front", "c (a / s) = (c / s) a: the scalar factor in front", _scalar_front, tidy=False),
    ]


#: The assumption-free rules for an expression without a named value (documentation, tests).
GENERAL: Sequence[str] = ("name_value", "common_divisor", "divisor_out", "sum_of_rows", "transpose_of_sum",
                          "order_terms", "quadratic_form", "scalar_in_front")


def symmetric_rules(names: Sequence[str], expr: n.Node) -> list[Rule]:
    """The rules under ``symmetric(A)`` for each name, then the general ones again (to tidy the result)."""
    if not names:
        return []

    def transpose_is_itself(node: n.Node) -> n.Node | None:
        if isinstance(node, n.T) and isinstance(node.a, n.Var) and node.a.name in names:
            return node.a
        if isinstance(node, n.T) and isinstance(node.a, n.Inv) and isinstance(node.a.a, n.Var) and \
                node.a.a.name in names:
            return node.a
        return None

    listed = ", ".join(names)
    return [Rule("symmetric", f"{listed} symmetric: A^T = A, A^{{-T}} = A^{{-1}} (then like terms collect: "
                              f"A + A^T = 2A)", transpose_is_itself),
            *[r for r in general_rules(expr) if r.rule != "name_value"]]


# ----------------------------------------------------------------------------------------------- applying
def rewrite(result: n.Node, rules: Sequence[Rule], stage: str,
            instances: Sequence[object]) -> tuple[n.Node, list[RewriteStep]]:
    """Apply ``rules`` in order (each to a fixed point); a step per rule that changed the result, checked by
    evaluating both sides on ``instances`` (:class:`.numeric.Instance`)."""
    from symdl.steps import budget

    steps: list[RewriteStep] = []
    for rule in rules:
        budget.check()
        after = result
        for _ in range(MAX_PASSES):
            new = _apply(after, rule.match)
            if rule.tidy:
                new = simplify(new)
            if new == after:
                break
            after = new
        if after != result:
            ok, error = same_value(result, after, instances)
            steps.append(RewriteStep(rule.rule, rule.words, result, after, stage, ok, error))
            result = after
    return result, steps


def same_value(before: n.Node, after: n.Node, instances: Sequence[object]) -> tuple[bool, float]:
    """Both sides evaluated on every instance: equal up to a relative 1e-9 (NumPy rounding)."""
    from symdl.steps.matrix.numeric import evaluate

    worst = 0.0
    for inst in instances:
        with np.errstate(all="ignore"):
            a = np.asarray(evaluate(before, inst.values, inst.sizes), float)  # type: ignore[attr-defined]
            b = np.asarray(evaluate(after, inst.values, inst.sizes), float)  # type: ignore[attr-defined]
        if np.shape(a) != np.shape(b) and a.size != 1 and b.size != 1:
            return False, float("inf")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            return False, float("inf")
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-12)
        worst = max(worst, float(np.max(np.abs(a - b))) / scale if a.size else 0.0)
    return worst <= 1e-9, worst
