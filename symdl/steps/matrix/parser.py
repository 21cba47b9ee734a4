"""A safe parser for matrix expressions: Python's ``ast`` and a whitelist, never ``eval``.

The syntax is NumPy's: ``+ - * / ** @``, unary ``-``, ``.T``, numbers, declared names, and calls of
:data:`CALLS` (``sum(A)``, ``sum(A, 0)``, ``trace``, ``det``, ``inv``, ``norm``, ``softmax``, ``logsumexp``,
``outer``, ``diag``, ``ones(n, d)``, ``eye(n)`` and the elementwise functions ``exp``, ``log``, ``sqrt``,
``abs``, ``tanh``, ``sigmoid``, ``relu``, ``softplus``, ...). Every name must be declared with a shape
(``X=n,d``); a declared size (``n``) may be used as a number. Anything else (attributes other than ``.T``,
subscripts, keywords, strings, lambdas, unknown names) is refused with a :class:`MatrixSyntaxError` that
names it. The text's length and nesting are capped by :func:`symdl.check.syntax.parse_text` first.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

from symdl.check.errors import ExpressionError
from symdl.check.syntax import MAX_EXPONENT, column, parse_text
from symdl.steps.matrix import nodes as n
from symdl.steps.matrix.errors import MatrixSyntaxError, ShapeError, UndeclaredNameError

__all__ = ["parse_matrix", "parse_shapes", "CALLS"]

_ONE: dict[str, Callable[[n.Node], n.Node]] = {
    "trace": n.Trace, "det": n.Det, "inv": n.Inv, "norm": n.Norm, "softmax": n.Softmax, "logsumexp": n.LogSumExp,
    "diag": n.Diag, **{name: (lambda a, _name=name: n.Func(_name, a)) for name in n.ELEMENTWISE},
}
#: Every callable name of the syntax.
CALLS = frozenset(_ONE) | {"sum", "outer", "ones", "eye"}
_BINARY: dict[type, Callable[[n.Node, n.Node], n.Node]] = {
    ast.Add: n.Add, ast.Sub: n.Sub, ast.Mult: n.Mul, ast.Div: n.Div, ast.MatMult: n.MatMul,
}


class _Builder:
    """One ``_<ASTClass>`` method per allowed syntax node."""

    def __init__(self, shapes: Mapping[str, n.Shape]) -> None:
        self.shapes = shapes
        self.sizes = {d for shape in shapes.values() for d in shape if isinstance(d, str)}

    def build(self, node: ast.AST) -> n.Node:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise MatrixSyntaxError(f"{type(node).__name__} not allowed in matrix expressions {column(node)}")
        return method(node)

    def _Expression(self, node: ast.Expression) -> n.Node:  # noqa: N802 - named after the AST class
        return self.build(node.body)

    def _Constant(self, node: ast.Constant) -> n.Node:  # noqa: N802
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise MatrixSyntaxError(f"only numbers are allowed as constants {column(node)}")
        if abs(node.value) > 1e300:
            raise MatrixSyntaxError(f"number too large {column(node)}")
        return n.Num(float(node.value))

    def _Name(self, node: ast.Name) -> n.Node:  # noqa: N802
        if node.id in self.shapes:
            return n.Var(node.id, tuple(self.shapes[node.id]))
        if node.id in self.sizes:
            return n.Size(node.id)
        if node.id in CALLS:
            raise MatrixSyntaxError(f"{node.id!r} is a function; call it, as {node.id}(...) {column(node)}")
        declared = ", ".join(sorted(self.shapes)) or "none"
        raise UndeclaredNameError(f"name {node.id!r} has no declared shape (declared: {declared}); "
                                  f"declare it, e.g. --shape {node.id}=n,d (--shape {node.id}= for a scalar)")

    def _UnaryOp(self, node: ast.UnaryOp) -> n.Node:  # noqa: N802
        operand = self.build(node.operand)
        if isinstance(node.op, ast.USub):
            return n.Num(-operand.value) if isinstance(operand, n.Num) else n.Neg(operand)
        if isinstance(node.op, ast.UAdd):
            return operand
        raise MatrixSyntaxError(f"operator {type(node.op).__name__} not allowed {column(node)}")

    def _BinOp(self, node: ast.BinOp) -> n.Node:  # noqa: N802
        left, right = self.build(node.left), self.build(node.right)
        if isinstance(node.op, ast.Pow):
            if not isinstance(right, n.Num):
                raise MatrixSyntaxError(f"the exponent of ** must be a number {column(node)}")
            if abs(right.value) > MAX_EXPONENT:
                raise MatrixSyntaxError(f"exponent {right.value:g} is too large (limit {MAX_EXPONENT}) {column(node)}")
            return n.Pow(left, right.value)
        operation = _BINARY.get(type(node.op))
        if operation is None:
            raise MatrixSyntaxError(f"operator {type(node.op).__name__} not allowed; use + - * / ** @ {column(node)}")
        result = operation(left, right)
        result.shape  # noqa: B018 - checks that the operands conform, now, where the column is known
        return result

    def _Attribute(self, node: ast.Attribute) -> n.Node:  # noqa: N802
        if node.attr != "T":
            raise MatrixSyntaxError(f"attribute .{node.attr} not allowed; only .T (transpose) {column(node)}")
        return n.T(self.build(node.value))

    def _Call(self, node: ast.Call) -> n.Node:  # noqa: N802
        if not isinstance(node.func, ast.Name):
            raise MatrixSyntaxError(f"only named functions can be called {column(node)}")
        name = node.func.id
        if node.keywords:
            raise MatrixSyntaxError(f"keyword arguments not allowed in {name}(...) {column(node)}")
        if name not in CALLS:
            raise MatrixSyntaxError(f"unknown function {name!r} {column(node)}; known: {', '.join(sorted(CALLS))}")
        if name in ("ones", "eye"):
            return self._constant_array(name, node)
        args = [self.build(a) for a in node.args]
        if name == "sum":
            return self._sum(args, node)
        expected = 2 if name == "outer" else 1
        if len(args) != expected:
            raise MatrixSyntaxError(f"{name} takes {expected} argument(s), got {len(args)} {column(node)}")
        result = n.Outer(*args) if name == "outer" else _ONE[name](args[0])
        result.shape  # noqa: B018 - shape check
        return result

    def _sum(self, args: list[n.Node], node: ast.Call) -> n.Node:
        if len(args) == 1:
            return n.Sum(args[0])
        if len(args) == 2 and isinstance(args[1], n.Num) and args[1].value in (0.0, 1.0):
            result = n.Sum(args[0], int(args[1].value))
            result.shape  # noqa: B018
            return result
        raise MatrixSyntaxError(f"sum takes an array and optionally an axis 0 or 1 {column(node)}")

    def _constant_array(self, name: str, node: ast.Call) -> n.Node:
        dims: list[n.Dim] = []
        for a in node.args:
            if isinstance(a, ast.Constant) and type(a.value) is int and 0 < a.value <= 10_000:
                dims.append(a.value)
            elif isinstance(a, ast.Name) and a.id in self.sizes:
                dims.append(a.id)
            else:
                raise MatrixSyntaxError(f"{name}(...) takes declared sizes or positive integers {column(node)}")
        if name == "eye" and len(dims) == 1:
            return n.Eye(dims[0])
        if name == "ones" and len(dims) in (1, 2):
            return n.Ones(tuple(dims))
        raise MatrixSyntaxError(f"{name} takes {'one size' if name == 'eye' else 'one or two sizes'} {column(node)}")


def parse_matrix(text: str, shapes: Mapping[str, n.Shape]) -> n.Node:
    """The expression tree of ``text``, its names declared in ``shapes`` (name -> shape).

    Raises:
        MatrixSyntaxError: the text breaks the syntax (what and where are named).
        UndeclaredNameError: a name has no declared shape.
        ShapeError: operands do not conform.
    """
    try:
        tree = parse_text(text)
    except ExpressionError as error:
        raise MatrixSyntaxError(str(error)) from None
    try:
        return _Builder(shapes).build(tree)
    except RecursionError:
        raise MatrixSyntaxError("expression nests too deeply") from None


def parse_shapes(declarations: list[str] | tuple[str, ...] | Mapping[str, object]) -> dict[str, n.Shape]:
    """Shapes from ``["X=n,d", "w=d", "c="]`` (an empty right side: a scalar) or a mapping name -> sizes.

    Sizes are positive integers or identifiers (``n``, ``d``, ``N``).

    Raises:
        ShapeError: a malformed declaration (named).
    """
    items = declarations.items() if isinstance(declarations, Mapping) else [_split(d) for d in declarations]
    shapes: dict[str, n.Shape] = {}
    for name, sizes in items:
        if not isinstance(name, str) or not name.isidentifier() or name in CALLS or name.startswith("_"):
            raise ShapeError(f"bad variable name {name!r} in a shape declaration")
        if isinstance(sizes, str):  # "c=" declares a scalar; otherwise every size is written (no "n,,d")
            parts = sizes.split(",") if sizes.strip() else []
        else:
            parts = list(sizes)  # type: ignore[arg-type]
        dims: list[n.Dim] = []
        for part in parts:
            part = part.strip() if isinstance(part, str) else part
            if part == "":
                raise ShapeError(f"empty size in the shape of {name} ({name}={sizes}); write {name}= for a scalar")
            if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
                if not 0 < int(part) <= 10_000:
                    raise ShapeError(f"size {part} of {name} must be between 1 and 10000")
                dims.append(int(part))
            elif isinstance(part, str) and part.isidentifier() and not part.startswith("_"):
                dims.append(part)
            else:
                raise ShapeError(f"bad size {part!r} in the shape of {name}: a positive integer or a name")
        if len(dims) > 2:
            raise ShapeError(f"{name} has {len(dims)} dimensions; scalars, vectors and matrices only")
        if name in shapes:
            raise ShapeError(f"{name} is declared twice")
        shapes[name] = tuple(dims)
    sizes_used = {d for s in shapes.values() for d in s if isinstance(d, str)}
    clash = sizes_used & set(shapes)
    if clash:
        raise ShapeError(f"{sorted(clash)[0]!r} is both a variable and a size")
    return shapes


def _split(declaration: str) -> tuple[str, str]:
    name, sep, sizes = declaration.partition("=")
    if not sep:
        raise ShapeError(f"shape declaration {declaration!r} must read NAME=SIZES, e.g. X=n,d (w= for a scalar)")
    return name.strip(), sizes
