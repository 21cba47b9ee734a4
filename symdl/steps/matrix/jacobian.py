r"""Forward identities for Jacobians of vector functions (numerator layout), after Parr & Howard.

For a vector (or scalar) node y and a vector (or scalar) variable x, :math:`J_y = \partial y / \partial x`
has shape ``y.shape + x.shape``: row i is the gradient of :math:`y_i` (numerator layout). The rules are
Parr & Howard's: elementwise binary operations have diagonal Jacobians
(:math:`\partial (w \otimes x) / \partial w = \operatorname{diag}(x)`,
:math:`\partial (w \oslash x) / \partial w = \operatorname{diag}(1 \oslash x)`), a scalar added to every
entry has the Jacobian :math:`\mathbf{1}` (scalar expansion), a sum reduces to :math:`\mathbf{1}^\top J`,
a constant matrix multiplies (:math:`\partial (A u) = A\, \partial u`), and the chain rule composes in order.
A Jacobian through a matrix-valued intermediate would be a 3- or 4-index tensor: refused by name.
"""

from __future__ import annotations

from collections.abc import Callable

from symdl.steps.matrix import nodes as n
from symdl.steps.matrix.errors import NoIdentityError
from symdl.steps.matrix.identities import DERIVATIVES

J = n.Node | None  # None: the zero Jacobian (the node does not depend on the variable)


def _plus(*parts: J) -> J:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    total = present[0]
    for p in present[1:]:
        total = n.Add(total, p)
    return total


class Forward:
    """Jacobians of every node with respect to ``var``; ``steps`` records (node, rule, Jacobian) in order."""

    def __init__(self, var: n.Var) -> None:
        self.var = var
        self.memo: dict[n.Node, J] = {}
        self.steps: list[tuple[n.Node, str, n.Node]] = []

    def __call__(self, node: n.Node) -> J:
        if node in self.memo:
            return self.memo[node]
        if not node.has(self.var):
            self.memo[node] = None
            return None
        if len(node.shape) > 1:
            raise NoIdentityError(f"the Jacobian through the matrix {node} would be a higher-order tensor; "
                                  f"ask for the gradient of a scalar instead")
        method: Callable[[n.Node], tuple[str, J]] | None = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise NoIdentityError(f"no Jacobian identity is known for {node}")
        rule, jac = method(node)
        self.memo[node] = jac
        if jac is not None and not isinstance(node, n.Var):
            self.steps.append((node, rule, jac))
        return jac

    # helpers
    @property
    def vector_var(self) -> bool:
        return len(self.var.shape) == 1

    def rows(self, v: n.Node, jac: J) -> J:
        """diag(v) @ J (each row i of J scaled by v_i), or v * J when the variable is a scalar."""
        if jac is None:
            return None
        if v.is_scalar:
            return n.Mul(v, jac)
        return n.MatMul(n.Diag(v), jac) if self.vector_var else n.Mul(v, jac)

    def through(self, node: n.Node, operand: n.Node, factor: n.Node) -> J:
        """The Jacobian of ``node`` through ``operand``, where d(node) = factor * d(operand) elementwise.

        Same shapes: diag(factor) J (the diagonal rule); a scalar operand expanded over a vector node:
        factor J^T as an outer product (scalar expansion, d(x + z)/dz = 1 when factor is 1).
        """
        jac = self(operand)
        if jac is None:
            return None
        if operand.shape == node.shape:
            return self.rows(factor, jac)
        if factor.is_scalar:
            factor = n.Mul(factor, n.Ones(node.shape))
        return n.Outer(factor, jac) if self.vector_var else n.Mul(factor, jac)

    # rules
    def _Var(self, node: n.Var) -> tuple[str, J]:  # noqa: N802 - named after the node class
        return "variable", (n.Eye(node.shape[0]) if self.vector_var else n.Num(1.0))

    def _Add(self, node: n.Add) -> tuple[str, J]:  # noqa: N802
        one = n.Num(1.0)
        return "sum (scalar expansion: d(x + z)/dz = 1)", _plus(self.through(node, node.a, one),
                                                                self.through(node, node.b, one))

    def _Sub(self, node: n.Sub) -> tuple[str, J]:  # noqa: N802
        return "difference", _plus(self.through(node, node.a, n.Num(1.0)), self.through(node, node.b, n.Num(-1.0)))

    def _Neg(self, node: n.Neg) -> tuple[str, J]:  # noqa: N802
        ja = self(node.a)
        return "negation", None if ja is None else n.Neg(ja)

    def _Mul(self, node: n.Mul) -> tuple[str, J]:  # noqa: N802
        return "elementwise product: d(w * x)/dw = diag(x)", _plus(self.through(node, node.a, node.b),
                                                                   self.through(node, node.b, node.a))

    def _Div(self, node: n.Div) -> tuple[str, J]:  # noqa: N802
        a, b = node.a, node.b
        return "elementwise quotient: d(w / x)/dw = diag(1 / x)", _plus(
            self.through(node, a, n.Div(n.Num(1.0), b)), self.through(node, b, n.Neg(n.Div(a, n.Pow(b, 2.0)))))

    def _Pow(self, node: n.Pow) -> tuple[str, J]:  # noqa: N802
        return "power", self.rows(n.Mul(n.Num(node.p), n.Pow(node.a, node.p - 1.0)), self(node.a))

    def _Func(self, node: n.Func) -> tuple[str, J]:  # noqa: N802
        factor = DERIVATIVES[node.name](n.Num(1.0), node.a)
        ja = self(node.a)
        return f"elementwise {node.name}: diag({node.name}'(u))", (None if factor is None else self.rows(factor, ja))

    def _T(self, node: n.T) -> tuple[str, J]:  # noqa: N802
        return "transpose of a vector", self(node.a)

    def _MatMul(self, node: n.MatMul) -> tuple[str, J]:  # noqa: N802
        a, b = node.a, node.b
        if len(a.shape) == 2:
            if a.has(self.var):
                raise NoIdentityError(f"the Jacobian of {node} through its matrix {a} is a tensor; "
                                      f"ask for the gradient of a scalar")
            jb = self(b)
            return "constant matrix: d(A u) = A du", None if jb is None else n.MatMul(a, jb)
        if len(b.shape) == 2:
            if b.has(self.var):
                raise NoIdentityError(f"the Jacobian of {node} through its matrix {b} is a tensor; "
                                      f"ask for the gradient of a scalar")
            ja = self(a)
            return "constant matrix: d(u^T B) = B^T du", None if ja is None else n.MatMul(n.T(b), ja)
        ja, jb = self(a), self(b)
        return "dot product: d(u . v) = v^T du + u^T dv", _plus(
            None if ja is None else n.MatMul(b, ja), None if jb is None else n.MatMul(a, jb))

    def _Sum(self, node: n.Sum) -> tuple[str, J]:  # noqa: N802
        ja = self(node.a)
        if ja is None:
            return "sum reduction", None
        return "sum reduction: d sum(u) = 1^T du", n.MatMul(n.Ones(node.a.shape), ja) if self.vector_var else n.Sum(ja)

    def _Softmax(self, node: n.Softmax) -> tuple[str, J]:  # noqa: N802
        jz = self(node.a)
        return "softmax: (diag(p) - p p^T) dz", None if jz is None else n.MatMul(
            n.Sub(n.Diag(node), n.Outer(node, node)), jz)

    def _Norm(self, node: n.Norm) -> tuple[str, J]:  # noqa: N802
        ju = self(node.a)
        return "norm: u^T du / ||u||", None if ju is None else n.MatMul(n.Div(node.a, node), ju)

    def _LogSumExp(self, node: n.LogSumExp) -> tuple[str, J]:  # noqa: N802
        ju = self(node.a)
        return "logsumexp: softmax(z)^T dz", None if ju is None else n.MatMul(n.Softmax(node.a), ju)
