r"""The identities of reverse-mode matrix calculus: for each operation, the gradient reaching each operand.

Write :math:`\bar v = \partial f / \partial v` for the gradient of the scalar f with respect to a node v
(it has v's shape). An identity maps the gradient :math:`\bar y` of a node y to its operands' contributions;
they are the adjoint forms of the differentials (:math:`df = \operatorname{tr}(\bar Y^\top dY)`):

* :math:`Y = A B`: :math:`dY = dA\,B + A\,dB` (order kept), so :math:`\bar A = \bar Y B^\top`,
  :math:`\bar B = A^\top \bar Y`;
* :math:`y = a \odot b`: :math:`dy = da \odot b + a \odot db`, so :math:`\bar a = \bar y \odot b`;
* :math:`y = f(u)` elementwise: :math:`dy = f'(u) \odot du` (Jacobian :math:`\operatorname{diag}(f'(u))`), so
  :math:`\bar u = \bar y \odot f'(u)`;
* :math:`y = \operatorname{tr}(A B)`: :math:`dy = \operatorname{tr}(dA\,B) + \operatorname{tr}(A\,dB)`, so
  :math:`\bar A = \bar y B^\top`;
* :math:`y = \log\det X`: :math:`dy = \operatorname{tr}(X^{-1} dX)` (Jacobi), so :math:`\bar X = \bar y X^{-\top}`;
* :math:`Y = X^{-1}`: :math:`dY = -X^{-1} dX\, X^{-1}`, so :math:`\bar X = -X^{-\top} \bar Y X^{-\top}`.

A scalar gradient standing for an array (``G`` for every entry, after ``sum``) is kept scalar until an
operation needs the array (then :math:`G \mathbf{1}`); an operand that was broadcast gets the gradient
summed over the broadcast axis. Composite identities (``norm(u)**2``, ``log(det(X))``,
``log(softmax(z))``, ``trace(A @ B)``) are matched before the generic ones: they give the textbook forms
directly (:math:`2u`, :math:`X^{-\top}`, :math:`\bar y - \operatorname{softmax}(z) \sum \bar y`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from symdl.steps.matrix import nodes as n
from symdl.steps.matrix.errors import NoIdentityError

Contributions = list[tuple[n.Node, n.Node]]


@dataclass(frozen=True)
class Identity:
    """A named identity: how a node's gradient flows to its operands.

    Attributes:
        rule: snake_case name (JSON, tests).
        text: the identity in plain text.
        latex: the identity in LaTeX.
        operands: the node's operands this identity differentiates through (a composite skips inner nodes).
        flow: ``(node, gradient) -> [(operand, contribution)]``.
    """

    rule: str
    text: str
    latex: str
    operands: Callable[[n.Node], tuple[n.Node, ...]]
    flow: Callable[[n.Node, n.Node], Contributions]


def full(g: n.Node, shape: n.Shape) -> n.Node:
    """The gradient as an array of ``shape`` (a scalar standing for every entry becomes ``g * ones``)."""
    if g.shape == shape:
        return g
    return n.Mul(g, n.Ones(shape))


def reduce_to(c: n.Node, node: n.Node, operand: n.Node) -> n.Node:
    """A contribution of ``node``'s shape reduced to ``operand``'s shape (sum over broadcast axes)."""
    if c.shape not in ((), node.shape):
        c = full(c, node.shape)
    if operand.shape == node.shape or (c.shape == () and operand.shape == ()):
        return c
    if operand.shape == ():  # a scalar broadcast over the node: sum over all entries
        return n.Mul(c, n.size_of(node.shape)) if c.shape == () else n.Sum(c)
    # a vector broadcast over the rows of a matrix: sum over axis 0
    return n.Mul(c, n.size_of(node.shape[:1])) if c.shape == () else n.Sum(c, 0)


def _operands(node: n.Node) -> tuple[n.Node, ...]:
    return node.args


# ----------------------------------------------------------------------------------------------- generic rules
def _add(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, reduce_to(g, node, node.a)), (node.b, reduce_to(g, node, node.b))]  # type: ignore[attr-defined]


def _sub(node: n.Node, g: n.Node) -> Contributions:
    a, b = node.a, node.b  # type: ignore[attr-defined]
    return [(a, reduce_to(g, node, a)), (b, reduce_to(n.Neg(g), node, b))]


def _neg(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, n.Neg(g))]  # type: ignore[attr-defined]


def _mul(node: n.Node, g: n.Node) -> Contributions:
    a, b = node.a, node.b  # type: ignore[attr-defined]
    return [(a, reduce_to(n.Mul(g, b), node, a)), (b, reduce_to(n.Mul(g, a), node, b))]


def _div(node: n.Node, g: n.Node) -> Contributions:
    a, b = node.a, node.b  # type: ignore[attr-defined]
    return [(a, reduce_to(n.Div(g, b), node, a)), (b, reduce_to(n.Neg(n.Div(n.Mul(g, a), n.Pow(b, 2.0))), node, b))]


def _pow(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, n.Mul(n.Num(node.p), n.Mul(g, n.Pow(node.a, node.p - 1.0))))]  # type: ignore[attr-defined]


#: f'(u) times the gradient, per elementwise function (``None``: zero almost everywhere).
DERIVATIVES: dict[str, Callable[[n.Node, n.Node], n.Node | None]] = {
    "exp": lambda g, u: n.Mul(g, n.Func("exp", u)),
    "log": lambda g, u: n.Div(g, u),
    "sqrt": lambda g, u: n.Div(g, n.Mul(n.Num(2.0), n.Func("sqrt", u))),
    "abs": lambda g, u: n.Mul(g, n.Func("sign", u)),
    "sign": lambda g, u: None,
    "step": lambda g, u: None,
    "tanh": lambda g, u: n.Mul(g, n.Sub(n.Num(1.0), n.Pow(n.Func("tanh", u), 2.0))),
    "sigmoid": lambda g, u: n.Mul(g, n.Mul(n.Func("sigmoid", u), n.Sub(n.Num(1.0), n.Func("sigmoid", u)))),
    "relu": lambda g, u: n.Mul(g, n.Func("step", u)),
    "softplus": lambda g, u: n.Mul(g, n.Func("sigmoid", u)),
    "sin": lambda g, u: n.Mul(g, n.Func("cos", u)),
    "cos": lambda g, u: n.Neg(n.Mul(g, n.Func("sin", u))),
    # silu' = sigmoid(u) (1 + u (1 - sigmoid(u)))
    "silu": lambda g, u: n.Mul(g, n.Mul(n.Func("sigmoid", u),
                                        n.Add(n.Num(1.0), n.Mul(u, n.Sub(n.Num(1.0), n.Func("sigmoid", u)))))),
    # leaky_relu' = 0.01 + 0.99 step(u) (PyTorch's negative_slope 0.01; 0.01 at 0)
    "leaky_relu": lambda g, u: n.Mul(g, n.Add(n.Num(0.01), n.Mul(n.Num(0.99), n.Func("step", u)))),
}

#: f'(u) in text, for the step's sentence.
DERIVATIVE_TEXT = {"exp": "exp(u)", "log": "1/u", "sqrt": "1/(2 sqrt(u))", "abs": "sign(u)", "sign": "0 (a.e.)",
                   "step": "0 (a.e.)", "tanh": "1 - tanh(u)**2", "sigmoid": "sigmoid(u)(1 - sigmoid(u))",
                   "relu": "step(u) (1 where u > 0, else 0: PyTorch's relu'(0) = 0)", "softplus": "sigmoid(u)",
                   "sin": "cos(u)", "cos": "-sin(u)", "silu": "sigmoid(u)(1 + u(1 - sigmoid(u)))",
                   "leaky_relu": "0.01 + 0.99 step(u) (negative_slope 0.01, as PyTorch)"}


def _func(node: n.Node, g: n.Node) -> Contributions:
    contribution = DERIVATIVES[node.name](g, node.a)  # type: ignore[attr-defined]
    return [] if contribution is None else [(node.a, contribution)]  # type: ignore[attr-defined]


def _matmul(node: n.Node, g: n.Node) -> Contributions:
    a, b = node.a, node.b  # type: ignore[attr-defined]
    g = full(g, node.shape)
    ra, rb = len(a.shape), len(b.shape)
    if ra == 2 and rb == 2:
        return [(a, n.MatMul(g, n.T(b))), (b, n.MatMul(n.T(a), g))]
    if ra == 2:  # A x
        return [(a, n.Outer(g, b)), (b, n.MatMul(n.T(a), g))]
    if rb == 2:  # x^T B
        return [(a, n.MatMul(b, g)), (b, n.Outer(a, g))]
    return [(a, n.Mul(g, b)), (b, n.Mul(g, a))]  # a . b


def _transpose(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, g if g.shape == () else n.T(g))]  # type: ignore[attr-defined]


def _outer(node: n.Node, g: n.Node) -> Contributions:
    g = full(g, node.shape)
    return [(node.a, n.MatMul(g, node.b)), (node.b, n.MatMul(n.T(g), node.a))]  # type: ignore[attr-defined]


def _trace(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, n.Mul(g, n.Eye(node.a.shape[0])))]  # type: ignore[attr-defined]


def _det(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, n.Mul(n.Mul(g, node), n.T(n.Inv(node.a))))]  # type: ignore[attr-defined]


def _inv(node: n.Node, g: n.Node) -> Contributions:
    inv_t = n.T(node)
    return [(node.a, n.Neg(n.MatMul(n.MatMul(inv_t, full(g, node.shape)), inv_t)))]  # type: ignore[attr-defined]


def _sum(node: n.Node, g: n.Node) -> Contributions:
    a, axis = node.a, node.axis  # type: ignore[attr-defined]
    if axis is None:
        return [(a, g)]  # the scalar gradient stands for every entry
    rows, cols = a.shape
    spread = n.Outer(n.Ones((rows,)), full(g, (cols,))) if axis == 0 else n.Outer(full(g, (rows,)), n.Ones((cols,)))
    return [(a, spread)]


def _norm(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, n.Mul(n.Div(g, node), node.a))]  # type: ignore[attr-defined]


def _softmax(node: n.Node, g: n.Node) -> Contributions:
    if g.shape == ():
        return []  # softmax sums to 1: a gradient equal on every entry has no effect
    return [(node.a, n.Mul(node, n.Sub(g, n.MatMul(node, g))))]  # type: ignore[attr-defined]


def _logsumexp(node: n.Node, g: n.Node) -> Contributions:
    return [(node.a, n.Mul(g, n.Softmax(node.a)))]  # type: ignore[attr-defined]


def _no_identity(node: n.Node, g: n.Node) -> Contributions:
    raise NoIdentityError(f"no identity is known for the derivative through {node}")


GENERIC: dict[type, Identity] = {
    n.Add: Identity("addition", "d(a + b) = da + db: add distributes the gradient", r"d(a + b) = da + db",
                    _operands, _add),
    n.Sub: Identity("difference", "d(a - b) = da - db", r"d(a - b) = da - db", _operands, _sub),
    n.Neg: Identity("negation", "d(-a) = -da", r"d(-a) = -da", _operands, _neg),
    n.Mul: Identity("hadamard_product", "d(a * b) = da * b + a * db (elementwise; a scalar factor scales)",
                    r"d(a \odot b) = da \odot b + a \odot db", _operands, _mul),
    n.Div: Identity("quotient", "d(a / b) = da / b - a * db / b**2 (elementwise)",
                    r"d(a \oslash b) = da \oslash b - a \odot db \oslash b^{2}", _operands, _div),
    n.Pow: Identity("power", "d(u**p) = p u**(p-1) * du (elementwise)", r"d(u^{p}) = p\,u^{p-1} \odot du",
                    _operands, _pow),
    n.Func: Identity("elementwise_chain", "d f(u) = f'(u) * du: the Jacobian is diag(f'(u))",
                     r"d f(u) = f'(u) \odot du, \quad \partial f/\partial u = \operatorname{diag}(f'(u))",
                     _operands, _func),
    n.MatMul: Identity("matrix_product", "d(A B) = dA B + A dB (order kept): grad A = G B^T, grad B = A^T G",
                       r"d(AB) = dA\,B + A\,dB \;\Rightarrow\; \bar A = \bar Y B^\top,\ \bar B = A^\top \bar Y",
                       _operands, _matmul),
    n.T: Identity("transpose", "d(A^T) = (dA)^T", r"d(A^\top) = (dA)^\top", _operands, _transpose),
    n.Outer: Identity("outer_product", "d(a b^T) = da b^T + a db^T", r"d(a b^\top) = da\,b^\top + a\,db^\top",
                      _operands, _outer),
    n.Trace: Identity("trace", "d tr(A) = tr(dA): grad A = G I", r"d \operatorname{tr}(A) = \operatorname{tr}(dA)",
                      _operands, _trace),
    n.Det: Identity("determinant", "d det X = det(X) tr(X^-1 dX) (Jacobi's formula)",
                    r"d \det X = \det X \operatorname{tr}(X^{-1} dX)", _operands, _det),
    n.Inv: Identity("inverse", "d X^-1 = -X^-1 dX X^-1", r"d X^{-1} = -X^{-1}\,dX\,X^{-1}", _operands, _inv),
    n.Sum: Identity("sum_reduction", "d sum(a) = sum(da): every entry gets the gradient (ones)",
                    r"d \textstyle\sum a = \mathbf{1}^\top da", _operands, _sum),
    n.Norm: Identity("norm", "d ||u|| = u . du / ||u||", r"d\lVert u\rVert = u^\top du / \lVert u \rVert",
                     _operands, _norm),
    n.Softmax: Identity("softmax", "d softmax(z) = (diag(p) - p p^T) dz, p = softmax(z)",
                        r"d\,p = (\operatorname{diag}(p) - p p^\top)\,dz", _operands, _softmax),
    n.LogSumExp: Identity("logsumexp", "d logsumexp(z) = softmax(z) . dz",
                          r"d \operatorname{logsumexp}(z) = \operatorname{softmax}(z)^\top dz", _operands, _logsumexp),
    n.Diag: Identity("diag", "no identity", "", _operands, _no_identity),
}


# ----------------------------------------------------------------------------------------------- composites
def _is_square_norm(node: n.Node) -> bool:
    return isinstance(node, n.Pow) and node.p == 2.0 and isinstance(node.a, n.Norm)


def _is_logdet(node: n.Node) -> bool:
    return isinstance(node, n.Func) and node.name == "log" and isinstance(node.a, n.Det)


def _is_log_softmax(node: n.Node) -> bool:
    return isinstance(node, n.Func) and node.name == "log" and isinstance(node.a, n.Softmax)


def _is_trace_product(node: n.Node) -> bool:
    return isinstance(node, n.Trace) and isinstance(node.a, n.MatMul) and len(node.a.a.shape) == 2 \
        and len(node.a.b.shape) == 2


def _inner(node: n.Node) -> tuple[n.Node, ...]:
    return (node.a.a,)  # type: ignore[attr-defined]


COMPOSITE: list[tuple[Callable[[n.Node], bool], Identity]] = [
    (_is_square_norm, Identity("squared_norm", "d ||u||**2 = 2 u . du", r"d \lVert u \rVert^2 = 2 u^\top du",
                               _inner, lambda node, g: [(node.a.a, n.Mul(n.Num(2.0), n.Mul(g, node.a.a)))])),
    (_is_logdet, Identity("log_determinant", "d log det X = tr(X^-1 dX) (Jacobi's formula): grad = X^-T",
                          r"d \log\det X = \operatorname{tr}(X^{-1} dX) \;\Rightarrow\; \bar X = X^{-\top}",
                          _inner, lambda node, g: [(node.a.a, n.Mul(g, n.T(n.Inv(node.a.a))))])),
    (_is_log_softmax, Identity("log_softmax",
                               "d log softmax(z) = (I - 1 softmax(z)^T) dz: grad z = G - softmax(z) sum(G)",
                               r"d \log \operatorname{softmax}(z) = (I - \mathbf{1} p^\top)\,dz",
                               _inner, lambda node, g: [(node.a.a, n.Sub(g, n.Mul(n.Sum(full(g, node.shape)),
                                                                                   node.a)))])),
    (_is_trace_product, Identity("trace_product", "d tr(A B) = tr(dA B) + tr(A dB): grad A = G B^T, grad B = G A^T",
                                 r"d\operatorname{tr}(AB) = \operatorname{tr}(dA\,B) + \operatorname{tr}(A\,dB)",
                                 lambda node: node.a.args,  # type: ignore[attr-defined]
                                 lambda node, g: [(node.a.a, n.Mul(g, n.T(node.a.b))),
                                                  (node.a.b, n.Mul(g, n.T(node.a.a)))])),
]


def identity_for(node: n.Node) -> Identity | None:
    """The identity that differentiates through ``node`` (None for a leaf)."""
    for matches, identity in COMPOSITE:
        if matches(node):
            return identity
    return GENERIC.get(type(node))
