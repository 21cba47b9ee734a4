r"""The matrix expression tree: one frozen dataclass per operation, each knowing its shape.

Shapes follow NumPy: ``()`` a scalar, ``(n,)`` a vector (a column in the math: :math:`A x`), ``(m, n)`` a
matrix. A size is an ``int`` or a name (``"n"``, ``"d"``): two sizes conform when they are equal (a named
size never equals a number: declare consistently). Elementwise operations broadcast a scalar against anything
and a vector ``(n,)`` against the rows of an ``(m, n)`` matrix, as NumPy does. ``@`` is NumPy's ``matmul``
on vectors and matrices (``x @ A @ x`` is the quadratic form :math:`x^\top A x`), ``.T`` of a vector is the
vector itself.

Nodes are compared structurally (frozen dataclasses), so the same subexpression written twice is one node of
the computation. Constructing a node checks its operands' shapes and raises :class:`ShapeError` naming both.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

from symdl.steps.matrix.errors import ShapeError

Dim = int | str
Shape = tuple[Dim, ...]

#: The elementwise functions (derivatives in :mod:`.identities`, NumPy in :mod:`.numeric`, LaTeX in :mod:`.printing`).
ELEMENTWISE = ("exp", "log", "sqrt", "abs", "sign", "step", "tanh", "sigmoid", "relu", "softplus", "sin", "cos",
               "silu", "leaky_relu")


def show_shape(shape: Shape) -> str:
    """``(n, d)`` as text (``()`` for a scalar, ``(n,)`` for a vector)."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


class Node:
    """Base class of the expression tree."""

    @property
    def shape(self) -> Shape:  # overridden by every class
        raise NotImplementedError

    @property
    def args(self) -> tuple[Node, ...]:
        """The operand nodes, in order."""
        values = (getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]
        return tuple(v for v in values if isinstance(v, Node))

    @property
    def is_scalar(self) -> bool:
        return self.shape == ()

    def walk(self):  # noqa: ANN201 - a generator of nodes
        """This node and every descendant (pre-order)."""
        yield self
        for a in self.args:
            yield from a.walk()

    def has(self, other: Node) -> bool:
        """Whether ``other`` occurs in this expression."""
        return any(n == other for n in self.walk())

    def __str__(self) -> str:
        from symdl.steps.matrix.printing import to_text

        return to_text(self)


def _conform(what: str, left: Node, right: Node) -> None:
    raise ShapeError(f"{what}: shapes {show_shape(left.shape)} and {show_shape(right.shape)} do not conform "
                     f"(in {left} and {right})")


def broadcast(what: str, left: Node, right: Node) -> Shape:
    """The shape of an elementwise operation: equal shapes, a scalar with anything, a vector with a matrix's rows."""
    a, b = left.shape, right.shape
    if a == b or not b:
        return a
    if not a:
        return b
    if len(a) == 2 and len(b) == 1 and a[1] == b[0]:
        return a
    if len(a) == 1 and len(b) == 2 and b[1] == a[0]:
        return b
    _conform(what, left, right)
    raise AssertionError  # unreachable


# ----------------------------------------------------------------------------------------------- leaves
@dataclass(frozen=True)
class Var(Node):
    """A declared variable (or a constant array): its name and shape."""

    name: str
    dims: Shape

    @property
    def shape(self) -> Shape:
        return self.dims


@dataclass(frozen=True)
class Num(Node):
    """A number."""

    value: float

    @property
    def shape(self) -> Shape:
        return ()


@dataclass(frozen=True)
class Size(Node):
    """A declared size used as a number (``N`` in ``sum(...) / N``)."""

    name: str

    @property
    def shape(self) -> Shape:
        return ()


@dataclass(frozen=True)
class Ones(Node):
    """The all-ones array :math:`\\mathbf{1}` of a shape."""

    dims: Shape

    @property
    def shape(self) -> Shape:
        return self.dims


@dataclass(frozen=True)
class Eye(Node):
    """The identity matrix :math:`I_n`."""

    n: Dim

    @property
    def shape(self) -> Shape:
        return (self.n, self.n)


@dataclass(frozen=True)
class Named(Node):
    """A named subexpression of a printed result (``R`` for the Rayleigh quotient): it prints as its name and
    evaluates as its value (:mod:`.textbook` introduces it; :func:`expand_names` puts the value back)."""

    name: str
    value: Node

    @property
    def shape(self) -> Shape:
        return self.value.shape


def expand_names(node: Node) -> Node:
    """``node`` with every :class:`Named` replaced by its value (the text JSON gives, parseable)."""
    if isinstance(node, Named):
        return expand_names(node.value)
    args = node.args
    return rebuild(node, [expand_names(a) for a in args]) if args else node


# ----------------------------------------------------------------------------------------------- elementwise
@dataclass(frozen=True)
class Add(Node):
    """a + b (elementwise, broadcasting)."""

    a: Node
    b: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        return broadcast("+", self.a, self.b)


@dataclass(frozen=True)
class Sub(Node):
    """a - b (elementwise, broadcasting)."""

    a: Node
    b: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        return broadcast("-", self.a, self.b)


@dataclass(frozen=True)
class Neg(Node):
    """-a."""

    a: Node

    @property
    def shape(self) -> Shape:
        return self.a.shape


@dataclass(frozen=True)
class Mul(Node):
    """a * b: the elementwise (Hadamard) product, or a scalar times an array."""

    a: Node
    b: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        return broadcast("*", self.a, self.b)


@dataclass(frozen=True)
class Div(Node):
    """a / b, elementwise."""

    a: Node
    b: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        return broadcast("/", self.a, self.b)


@dataclass(frozen=True)
class Pow(Node):
    """a ** p, elementwise, for a number p."""

    a: Node
    p: float

    @property
    def shape(self) -> Shape:
        return self.a.shape


@dataclass(frozen=True)
class Func(Node):
    """f(a) applied elementwise, f one of :data:`ELEMENTWISE`."""

    name: str
    a: Node

    @property
    def shape(self) -> Shape:
        return self.a.shape


# ----------------------------------------------------------------------------------------------- linear algebra
@dataclass(frozen=True)
class MatMul(Node):
    """a @ b (NumPy's matmul on vectors and matrices)."""

    a: Node
    b: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        a, b = self.a.shape, self.b.shape
        if not a or not b:
            raise ShapeError(f"@ needs vectors or matrices, got {show_shape(a)} and {show_shape(b)} "
                             f"(in {self.a} and {self.b}); use * for a scalar")
        if a[-1] != b[0]:
            _conform("@", self.a, self.b)
        return tuple(a[:-1]) + tuple(b[1:])


@dataclass(frozen=True)
class T(Node):
    """a.T, the transpose (a vector's or a scalar's is itself)."""

    a: Node

    @property
    def shape(self) -> Shape:
        return tuple(reversed(self.a.shape))


@dataclass(frozen=True)
class Outer(Node):
    """outer(a, b) = a b^T for vectors a, b."""

    a: Node
    b: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        if len(self.a.shape) != 1 or len(self.b.shape) != 1:
            raise ShapeError(f"outer takes two vectors, got {show_shape(self.a.shape)} and {show_shape(self.b.shape)}")
        return (self.a.shape[0], self.b.shape[0])


@dataclass(frozen=True)
class Diag(Node):
    """diag(v), the square matrix with v on its diagonal."""

    a: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        if len(self.a.shape) != 1:
            raise ShapeError(f"diag takes a vector, got {show_shape(self.a.shape)} (in {self.a})")
        return (self.a.shape[0], self.a.shape[0])


def _square(what: str, a: Node) -> Dim:
    if len(a.shape) != 2 or a.shape[0] != a.shape[1]:
        raise ShapeError(f"{what} needs a square matrix, got shape {show_shape(a.shape)} (in {a})")
    return a.shape[0]


@dataclass(frozen=True)
class Trace(Node):
    """trace(A)."""

    a: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        _square("trace", self.a)
        return ()


@dataclass(frozen=True)
class Det(Node):
    """det(A)."""

    a: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        _square("det", self.a)
        return ()


@dataclass(frozen=True)
class Inv(Node):
    """inv(A), the inverse matrix."""

    a: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        return (_square("inv", self.a),) * 2


@dataclass(frozen=True)
class Sum(Node):
    """sum(a) over every entry, or sum(a, axis) over one axis of a matrix."""

    a: Node
    axis: int | None = None

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        if self.axis is None:
            return ()
        if len(self.a.shape) != 2 or self.axis not in (0, 1):
            raise ShapeError(f"sum(a, axis) takes a matrix and axis 0 or 1, got shape {show_shape(self.a.shape)} "
                             f"and axis {self.axis}")
        return (self.a.shape[1 - self.axis],)


@dataclass(frozen=True)
class Norm(Node):
    """norm(a): the Euclidean norm of a vector, the Frobenius norm of a matrix."""

    a: Node

    @property
    def shape(self) -> Shape:
        return ()


def _vector(what: str, a: Node) -> Shape:
    if len(a.shape) != 1:
        raise ShapeError(f"{what} takes a vector, got shape {show_shape(a.shape)} (in {a})")
    return a.shape


@dataclass(frozen=True)
class Softmax(Node):
    """softmax(z) = exp(z) / sum(exp(z)) of a vector."""

    a: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        return _vector("softmax", self.a)


@dataclass(frozen=True)
class LogSumExp(Node):
    """logsumexp(z) = log(sum(exp(z))) of a vector."""

    a: Node

    @cached_property
    def shape(self) -> Shape:  # type: ignore[override]
        _vector("logsumexp", self.a)
        return ()


def rebuild(node: Node, args: list[Node]) -> Node:
    """``node`` with its operand nodes replaced by ``args`` (other fields kept)."""
    values, it = {}, iter(args)
    for f in fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        values[f.name] = next(it) if isinstance(value, Node) else value
    return type(node)(**values)


def size_of(shape: Shape) -> Node:
    """The number of entries of ``shape`` as a node (a product of sizes)."""
    product: Node | None = None
    for dim in shape:
        factor: Node = Num(float(dim)) if isinstance(dim, int) else Size(dim)
        product = factor if product is None else Mul(product, factor)
    return product if product is not None else Num(1.0)
