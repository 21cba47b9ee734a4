r"""Algebraic clean-up of derived matrix expressions: each rewrite an identity valid for every value.

The derivation produces results such as ``1 * X.T @ (2 * (X @ w - y))``; these rules, applied bottom
up to a fixed point, bring them to ``2 * X.T @ (X @ w - y)``:

* numbers: ``1 * a = a``, constants folded and moved to the front, ``-(-a) = a``, a sign pulled out of
  every product, transpose, sum and outer product;
* transposes: :math:`(A^\top)^\top = A`, a vector's or a scalar's transpose is itself,
  :math:`(A B)^\top = B^\top A^\top` when that removes a transpose, :math:`(a b^\top)^\top = b a^\top`;
  a row vector times a matrix is written as the matrix's transpose times the column (:math:`x^\top A =
  (A^\top x)^\top`);
* identities: :math:`A I = I A = A`, :math:`a \odot \mathbf{1} = a`;
* sums of terms: like terms collected (:math:`A x + A x = 2 A x`), a common right or left factor taken out
  (:math:`A x + A^\top x = (A + A^\top) x`);
* a declared probability vector: :math:`\sum_k y_k = 1`.

Every rewrite keeps the value for every input: the derivation's final numeric check runs on the
simplified result, so a faulty rewrite would be caught, not printed.
"""

from __future__ import annotations

from collections.abc import Callable

from symdl.steps.matrix import nodes as n

MAX_PASSES = 60


def _num(node: n.Node) -> float | None:
    return node.value if isinstance(node, n.Num) else None


class _Simplifier:
    def __init__(self, simplex: frozenset[str]) -> None:
        self.simplex = simplex

    def __call__(self, node: n.Node) -> n.Node:
        for _ in range(MAX_PASSES):
            new = self.once(node)
            if new == node:
                return node
            node = new
        return node

    def once(self, node: n.Node) -> n.Node:
        args = node.args
        if args and not isinstance(node, n.Named):  # a named value is printed by its name: left as defined
            node = n.rebuild(node, [self.once(a) for a in args])
        rule: Callable[[n.Node], n.Node] | None = getattr(self, f"_{type(node).__name__}", None)
        return rule(node) if rule is not None else node

    # ------------------------------------------------------------------ signs and numbers
    def _Neg(self, node: n.Neg) -> n.Node:  # noqa: N802 - named after the node class
        a = node.a
        if isinstance(a, n.Neg):
            return a.a
        if isinstance(a, n.Num):
            return n.Num(-a.value)
        return node

    def _Mul(self, node: n.Mul) -> n.Node:  # noqa: N802
        a, b = node.a, node.b
        ca, cb = _num(a), _num(b)
        if ca is not None and cb is not None:
            return n.Num(ca * cb)
        if cb is not None or (b.is_scalar and not a.is_scalar and ca is None):
            return n.Mul(b, a)  # numbers, then scalars, to the front
        if ca == 1.0:
            return b
        if ca == -1.0:
            return n.Neg(b)
        if ca is not None and ca < 0:
            return n.Neg(n.Mul(n.Num(-ca), b))
        if ca is not None and isinstance(b, n.Mul) and _num(b.a) is not None:
            return n.Mul(n.Num(ca * b.a.value), b.b)  # type: ignore[attr-defined]
        if ca is None and isinstance(b, n.Mul) and _num(b.a) is not None:
            return n.Mul(b.a, n.Mul(a, b.b))  # a * (c * x) = c * (a * x)
        if isinstance(a, n.Mul) and _num(a.a) is not None:
            return n.Mul(a.a, n.Mul(a.b, b))  # (c * a) * x = c * (a * x)
        if isinstance(a, n.Neg):
            return n.Neg(n.Mul(a.a, b))
        if isinstance(b, n.Neg):
            return n.Neg(n.Mul(a, b.a))
        if isinstance(a, n.Div) and _num(a.a) == 1.0 and n.broadcast("*", a, b) == b.shape:
            return n.Div(b, a.b)  # (1 / s) * x = x / s (elementwise; s broadcasts like x)
        if isinstance(b, n.Ones) and a.shape == b.shape:
            return a
        if isinstance(a, n.Ones) and a.shape == b.shape:
            return b
        return node

    def _Div(self, node: n.Div) -> n.Node:  # noqa: N802
        a, b = node.a, node.b
        if _num(b) == 1.0:
            return a
        if isinstance(a, n.Neg):
            return n.Neg(n.Div(a.a, b))
        if isinstance(b, n.Neg):
            return n.Neg(n.Div(a, b.a))
        if isinstance(a, n.Mul) and _num(a.a) is not None:
            return n.Mul(a.a, n.Div(a.b, b))
        if isinstance(b, n.Mul) and _num(b.a) not in (None, 0.0) and n.broadcast("/", a, b.b) == node.shape:
            return n.Mul(n.Num(1.0 / b.a.value), n.Div(a, b.b))  # a / (c b) = (1/c) (a / b)
        return node

    def _Pow(self, node: n.Pow) -> n.Node:  # noqa: N802
        return node.a if node.p == 1.0 else node

    # ------------------------------------------------------------------ products and transposes
    def _MatMul(self, node: n.MatMul) -> n.Node:  # noqa: N802
        a, b = node.a, node.b
        for side, other, make in ((a, b, lambda x: n.MatMul(x, b)), (b, a, lambda x: n.MatMul(a, x))):
            if isinstance(side, n.Neg):
                return n.Neg(make(side.a))
            if isinstance(side, n.Mul) and side.a.is_scalar:
                return n.Mul(side.a, make(side.b))
            if isinstance(side, n.Eye):
                return other
            if isinstance(side, n.Div) and side.b.is_scalar:  # A (b / s) = (A b) / s for a scalar s
                return n.Div(make(side.a), side.b)
        if len(a.shape) == 1 and len(b.shape) == 2:
            return n.MatMul(n.T(b), a)  # x^T A = (A^T x)^T, a vector either way
        return node

    def _T(self, node: n.T) -> n.Node:  # noqa: N802
        a = node.a
        if len(a.shape) < 2:
            return a
        if isinstance(a, n.T):
            return a.a
        if isinstance(a, (n.Eye, n.Diag)):
            return a
        if isinstance(a, n.Ones):
            return n.Ones(tuple(reversed(a.dims)))
        if isinstance(a, n.Neg):
            return n.Neg(n.T(a.a))
        if isinstance(a, n.Mul) and a.a.is_scalar:
            return n.Mul(a.a, n.T(a.b))
        if isinstance(a, n.Outer):
            return n.Outer(a.b, a.a)
        if isinstance(a, n.MatMul) and (isinstance(a.a, n.T) or isinstance(a.b, n.T)):
            return n.MatMul(n.T(a.b), n.T(a.a))
        return node

    def _Outer(self, node: n.Outer) -> n.Node:  # noqa: N802
        a, b = node.a, node.b
        if isinstance(a, n.Neg):
            return n.Neg(n.Outer(a.a, b))
        if isinstance(b, n.Neg):
            return n.Neg(n.Outer(a, b.a))
        if isinstance(a, n.Mul) and a.a.is_scalar:
            return n.Mul(a.a, n.Outer(a.b, b))
        if isinstance(b, n.Mul) and b.a.is_scalar:
            return n.Mul(b.a, n.Outer(a, b.b))
        return node

    def _Sum(self, node: n.Sum) -> n.Node:  # noqa: N802
        a = node.a
        if isinstance(a, n.Neg):
            return n.Neg(n.Sum(a.a, node.axis))
        if isinstance(a, n.Mul) and a.a.is_scalar:
            return n.Mul(a.a, n.Sum(a.b, node.axis))
        if node.axis is None and isinstance(a, n.Var) and a.name in self.simplex:
            return n.Num(1.0)
        return node

    # ------------------------------------------------------------------ sums of terms
    def _Add(self, node: n.Node) -> n.Node:  # noqa: N802
        terms = _terms(node)
        collected = _collect(terms)
        factored = _factor(collected, self)
        new = _rebuild(factored)
        return new if new is not None else node

    _Sub = _Add


def _terms(node: n.Node, sign: float = 1.0) -> list[tuple[float, n.Node]]:
    """The signed terms of a sum: ``a - 2 * b`` -> ``[(1, a), (-2, b)]``."""
    if isinstance(node, n.Add):
        return _terms(node.a, sign) + _terms(node.b, sign)
    if isinstance(node, n.Sub):
        return _terms(node.a, sign) + _terms(node.b, -sign)
    if isinstance(node, n.Neg):
        return _terms(node.a, -sign)
    if isinstance(node, n.Mul) and isinstance(node.a, n.Num):
        return [(c * node.a.value, t) for c, t in _terms(node.b, sign)] if not isinstance(node.b, (n.Add, n.Sub)) \
            else [(sign * node.a.value, node.b)]
    return [(sign, node)]


def _collect(terms: list[tuple[float, n.Node]]) -> list[tuple[float, n.Node]]:
    out: list[tuple[float, n.Node]] = []
    for coefficient, term in terms:
        for i, (c, t) in enumerate(out):
            if t == term:
                out[i] = (c + coefficient, t)
                break
        else:
            out.append((coefficient, term))
    return [(c, t) for c, t in out if c != 0.0] or [(0.0, terms[0][1])]


def _factor(terms: list[tuple[float, n.Node]], simplify: _Simplifier) -> list[tuple[float, n.Node]]:
    """A factor common to two or more product terms taken out: A x + B x = (A + B) x, s a + s b = s (a + b)."""
    for side, kind in (("b", n.MatMul), ("a", n.MatMul), ("a", n.Mul), ("b", n.Div)):
        groups: dict[n.Node, list[int]] = {}
        for i, (_, t) in enumerate(terms):
            if isinstance(t, kind) and (kind is n.MatMul or getattr(t, side).is_scalar):
                groups.setdefault(getattr(t, side), []).append(i)
        for common, members in groups.items():
            if len(members) < 2:
                continue
            others = [(terms[i][0], getattr(terms[i][1], "a" if side == "b" else "b")) for i in members]
            inner = _rebuild(others)
            if inner is None:
                continue
            merged = kind(inner, common) if side == "b" else kind(common, inner)
            rest = [terms[i] for i in range(len(terms)) if i not in members]
            return [(1.0, merged)] + rest
    return terms


def _rebuild(terms: list[tuple[float, n.Node]]) -> n.Node | None:
    """The sum of signed terms, positive ones first (``a + b - c``)."""
    def scaled(c: float, t: n.Node) -> n.Node:
        return t if abs(c) == 1.0 else n.Mul(n.Num(abs(c)), t)

    if len(terms) > 1 and all(c < 0 for c, _ in terms):  # -a - b = -(a + b)
        inner = _rebuild([(-c, t) for c, t in terms])
        return None if inner is None else n.Neg(inner)
    magnitudes = {abs(c) for c, _ in terms}
    if len(terms) > 1 and len(magnitudes) == 1 and magnitudes != {1.0} and 0.0 not in magnitudes:
        common = magnitudes.pop()  # c a + c b = c (a + b)
        inner = _rebuild([(c / common, t) for c, t in terms])
        return None if inner is None else n.Mul(n.Num(common), inner)
    ordered = sorted(terms, key=lambda ct: ct[0] < 0)  # stable: positive terms keep their order
    result: n.Node | None = None
    for c, t in ordered:
        if c == 0.0:
            return n.Mul(n.Num(0.0), t)
        term = scaled(c, t)
        if result is None:
            result = term if c > 0 else n.Neg(term)
        else:
            result = n.Add(result, term) if c > 0 else n.Sub(result, term)
    return result


def simplify(node: n.Node, simplex: frozenset[str] = frozenset()) -> n.Node:
    """``node`` rewritten by the identities of this module (``simplex``: names of probability vectors)."""
    return _Simplifier(simplex)(node)
