r"""Printers of matrix expressions: NumPy-syntax text (parseable back by :mod:`.parser`) and LaTeX.

Text is the input syntax, so a printed result can be parsed again and evaluated with NumPy
(:func:`symdl.steps.matrix.numeric.evaluate`). Python's precedence decides the brackets: ``**`` binds
tighter than unary ``-``, which binds tighter than ``* / @`` (one level, left to right), then ``+ -``.
A scalar factor on the left needs no bracket around a product on its right (``2 * X.T @ u``): for a
scalar s, ``(s A) B = s (A B)``.

LaTeX: :math:`X^\top`, :math:`X^{-1}`, :math:`\operatorname{tr}`, :math:`\odot` for the elementwise
product of two arrays, :math:`\oslash` for elementwise division, :math:`\mathbf{1}` and :math:`I`.
"""

from __future__ import annotations

from collections.abc import Callable

from symdl.steps.matrix import nodes as n

_ATOM, _POSTFIX, _POWER, _UNARY, _PRODUCT, _SUM = 100, 90, 80, 70, 60, 50

#: LaTeX of the elementwise functions.
FUNCTION_LATEX = {"exp": r"\exp", "log": r"\log", "sqrt": r"\sqrt", "abs": r"\operatorname{abs}",
                  "sign": r"\operatorname{sign}", "step": r"\operatorname{step}", "tanh": r"\tanh",
                  "sigmoid": r"\sigma", "relu": r"\operatorname{relu}", "softplus": r"\operatorname{softplus}",
                  "sin": r"\sin", "cos": r"\cos", "silu": r"\operatorname{silu}",
                  "leaky_relu": r"\operatorname{leaky\_relu}"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


class _Text:
    """NumPy-syntax text; ``names`` abbreviates subexpressions by a let-name."""

    def __init__(self, names: dict[n.Node, str] | None = None) -> None:
        self.names = names or {}

    def __call__(self, node: n.Node) -> tuple[str, int]:
        if node in self.names:
            return self.names[node], _ATOM
        return getattr(self, f"_{type(node).__name__}")(node)

    def wrap(self, node: n.Node, minimum: int) -> str:
        text, prec = self(node)
        return text if prec >= minimum else f"({text})"

    def _Var(self, node: n.Var) -> tuple[str, int]:  # noqa: N802 - named after the node class
        return node.name, _ATOM

    def _Size(self, node: n.Size) -> tuple[str, int]:  # noqa: N802
        return node.name, _ATOM

    def _Named(self, node: n.Named) -> tuple[str, int]:  # noqa: N802
        return node.name, _ATOM

    def _Num(self, node: n.Num) -> tuple[str, int]:  # noqa: N802
        return _number(node.value), (_ATOM if node.value >= 0 else _UNARY)

    def _Ones(self, node: n.Ones) -> tuple[str, int]:  # noqa: N802
        return f"ones({', '.join(map(str, node.dims))})", _ATOM

    def _Eye(self, node: n.Eye) -> tuple[str, int]:  # noqa: N802
        return f"eye({node.n})", _ATOM

    def _binary(self, node: n.Node, symbol: str, prec: int) -> tuple[str, int]:
        a, b = node.args
        left_scalar = symbol in ("*", "/", "@") and a.is_scalar
        right = self.wrap(b, prec if (symbol == "*" and left_scalar) else prec + 1)
        left = f"({self(a)[0]})" if _mixed(node, a) else self.wrap(a, prec)
        return f"{left} {symbol} {right}", prec

    def _Add(self, node: n.Add) -> tuple[str, int]:  # noqa: N802
        return self._binary(node, "+", _SUM)

    def _Sub(self, node: n.Sub) -> tuple[str, int]:  # noqa: N802
        return self._binary(node, "-", _SUM)

    def _Mul(self, node: n.Mul) -> tuple[str, int]:  # noqa: N802
        return self._binary(node, "*", _PRODUCT)

    def _Div(self, node: n.Div) -> tuple[str, int]:  # noqa: N802
        return self._binary(node, "/", _PRODUCT)

    def _MatMul(self, node: n.MatMul) -> tuple[str, int]:  # noqa: N802
        return self._binary(node, "@", _PRODUCT)

    def _Neg(self, node: n.Neg) -> tuple[str, int]:  # noqa: N802
        return f"-{self.wrap(node.a, _PRODUCT if not isinstance(node.a, n.Neg) else _ATOM)}", _UNARY

    def _Pow(self, node: n.Pow) -> tuple[str, int]:  # noqa: N802
        exponent = _number(node.p)
        return f"{self.wrap(node.a, _POSTFIX)}**{exponent if node.p >= 0 else '(' + exponent + ')'}", _POWER

    def _T(self, node: n.T) -> tuple[str, int]:  # noqa: N802
        return f"{self.wrap(node.a, _ATOM)}.T", _POSTFIX

    def _call(self, name: str, *parts: n.Node | str) -> tuple[str, int]:
        inner = ", ".join(p if isinstance(p, str) else self(p)[0] for p in parts)
        return f"{name}({inner})", _ATOM

    def _Func(self, node: n.Func) -> tuple[str, int]:  # noqa: N802
        return self._call(node.name, node.a)

    def _Sum(self, node: n.Sum) -> tuple[str, int]:  # noqa: N802
        return self._call("sum", node.a) if node.axis is None else self._call("sum", node.a, str(node.axis))

    def _Outer(self, node: n.Outer) -> tuple[str, int]:  # noqa: N802
        return self._call("outer", node.a, node.b)

    def _one(name: str) -> Callable[[_Text, n.Node], tuple[str, int]]:  # type: ignore[misc]
        return lambda self, node: self._call(name, node.args[0])

    _Diag, _Trace, _Det, _Inv, _Norm, _Softmax, _LogSumExp = (
        _one("diag"), _one("trace"), _one("det"), _one("inv"), _one("norm"), _one("softmax"), _one("logsumexp"))


def _mixed(node: n.Node, operand: n.Node) -> bool:
    """An elementwise product inside a matrix product or the reverse: bracketed for the reader (Python would
    read them left to right at one precedence, correctly, but ``A @ G * M @ B`` hides which is which)."""
    products = (n.Mul, n.Div, n.MatMul)
    return isinstance(node, products) and isinstance(operand, products) and \
        (type(node) is n.MatMul) != (type(operand) is n.MatMul) and not operand.args[0].is_scalar


def to_text(node: n.Node, names: dict[n.Node, str] | None = None) -> str:
    """The NumPy-syntax text of ``node`` (``names``: subexpressions printed as their let-name)."""
    return _Text(names)(node)[0]


class _Latex(_Text):
    """LaTeX of an expression (same precedence logic, textbook notation)."""

    def __call__(self, node: n.Node) -> tuple[str, int]:
        if node in self.names:
            return _symbol(self.names[node]), _ATOM
        return getattr(self, f"_{type(node).__name__}")(node)

    def _Var(self, node: n.Var) -> tuple[str, int]:  # noqa: N802
        return _symbol(node.name), _ATOM

    def _Size(self, node: n.Size) -> tuple[str, int]:  # noqa: N802
        return _symbol(node.name), _ATOM

    def _Named(self, node: n.Named) -> tuple[str, int]:  # noqa: N802
        return _symbol(node.name), _ATOM

    def _Ones(self, node: n.Ones) -> tuple[str, int]:  # noqa: N802
        return (r"\mathbf{1}" if len(node.dims) == 1 else r"\mathbf{1}\mathbf{1}^\top"), _ATOM

    def _Eye(self, node: n.Eye) -> tuple[str, int]:  # noqa: N802
        return "I", _ATOM

    def _binary(self, node: n.Node, symbol: str, prec: int) -> tuple[str, int]:
        a, b = node.args
        if symbol == "/" and b.is_scalar:
            return rf"\frac{{{self(a)[0]}}}{{{self(b)[0]}}}", _ATOM
        if symbol == "@" and isinstance(a, n.MatMul) and len(a.a.shape) == 1 and a not in self.names:
            return f"{self(a)[0]} {self.wrap(b, prec + 1)}", prec  # (x^T A) x is x^T A x: already a row
        if symbol == "@" and len(a.shape) == 1:  # a vector on the left of a product is a row: a^T
            return f"{self.wrap(a, _ATOM)}^\\top {self.wrap(b, prec + 1)}", prec
        if symbol == "*":
            symbol = r"\odot" if not (a.is_scalar or b.is_scalar) else ""
        elif symbol == "/":
            symbol = r"\oslash"
        elif symbol == "@":
            symbol = ""
        left_scalar = a.is_scalar and prec == _PRODUCT
        right = self.wrap(b, prec if left_scalar else prec + 1)
        joiner = f" {symbol} " if symbol else " "
        # as in the text printer: an elementwise product inside a matrix product (or the reverse) is bracketed,
        # else (W^T G \odot M) X^T prints as W^T G \odot M X^T, which reads as the wrong product
        left = rf"\left({self(a)[0]}\right)" if _mixed(node, a) and a not in self.names else self.wrap(a, prec)
        return f"{left}{joiner}{right}", prec

    def wrap(self, node: n.Node, minimum: int) -> str:
        text, prec = self(node)
        return text if prec >= minimum else rf"\left({text}\right)"

    def _Neg(self, node: n.Neg) -> tuple[str, int]:  # noqa: N802
        return f"-{self.wrap(node.a, _PRODUCT)}", _UNARY

    def _Pow(self, node: n.Pow) -> tuple[str, int]:  # noqa: N802
        base = self.wrap(node.a, _ATOM)
        if isinstance(node.a, n.Norm):
            base = self(node.a)[0]
        return f"{base}^{{{_number(node.p)}}}", _POWER

    def _T(self, node: n.T) -> tuple[str, int]:  # noqa: N802
        if isinstance(node.a, n.Inv):
            return rf"{self.wrap(node.a.a, _ATOM)}^{{-\top}}", _POSTFIX
        return rf"{self.wrap(node.a, _ATOM)}^\top", _POSTFIX

    def _Inv(self, node: n.Inv) -> tuple[str, int]:  # noqa: N802
        return f"{self.wrap(node.a, _ATOM)}^{{-1}}", _POSTFIX

    def _Func(self, node: n.Func) -> tuple[str, int]:  # noqa: N802
        name = FUNCTION_LATEX[node.name]
        if node.name == "sqrt":
            return rf"\sqrt{{{self(node.a)[0]}}}", _ATOM
        return rf"{name}\left({self(node.a)[0]}\right)", _ATOM

    def _Sum(self, node: n.Sum) -> tuple[str, int]:  # noqa: N802
        if node.axis is None:
            return rf"\mathbf{{1}}^\top {self.wrap(node.a, _POSTFIX)} \mathbf{{1}}" if len(node.a.shape) == 2 \
                else rf"\textstyle\sum {self.wrap(node.a, _POSTFIX)}", _SUM
        return rf"\operatorname{{sum}}_{{{node.axis}}}\left({self(node.a)[0]}\right)", _ATOM

    def _Outer(self, node: n.Outer) -> tuple[str, int]:  # noqa: N802
        return f"{self.wrap(node.a, _POSTFIX)} {self.wrap(node.b, _ATOM)}^\\top", _PRODUCT

    def _op(name: str) -> Callable[[_Latex, n.Node], tuple[str, int]]:  # type: ignore[misc]
        return lambda self, node: (rf"{name}\left({self(node.args[0])[0]}\right)", _ATOM)

    _Diag, _Trace, _Det, _Softmax, _LogSumExp = (
        _op(r"\operatorname{diag}"), _op(r"\operatorname{tr}"), _op(r"\det"), _op(r"\operatorname{softmax}"),
        _op(r"\operatorname{logsumexp}"))

    def _Norm(self, node: n.Norm) -> tuple[str, int]:  # noqa: N802
        return rf"\left\lVert {self(node.a)[0]} \right\rVert", _ATOM


_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "lambda", "mu", "sigma", "theta", "Sigma", "Lambda",
          "Theta", "Gamma", "Delta", "phi", "psi", "omega", "Omega", "rho", "tau", "eta", "xi", "nu", "kappa"}


def _symbol(name: str) -> str:
    """A variable name in LaTeX: a Greek name as its letter, ``u1`` as :math:`u_{1}`, longer names upright."""
    head, digits = name.rstrip("0123456789"), name[len(name.rstrip("0123456789")):]
    if "_" in head:
        head, _, tail = head.partition("_")
        digits = tail + digits
    base = f"\\{head}" if head in _GREEK else head if len(head) == 1 else rf"\mathrm{{{head}}}"
    return f"{base}_{{{digits}}}" if digits else base


def to_latex(node: n.Node, names: dict[n.Node, str] | None = None) -> str:
    """The LaTeX of ``node`` (``names``: subexpressions printed as their let-name)."""
    return _Latex(names)(node)[0]
