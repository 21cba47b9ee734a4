"""The syntax rules and caps of expression strings, checked without SymPy (pure Python).

:func:`validate` is the first phase of :func:`symdl.expr.parse`: it rejects
anything outside the whitelist, and anything too big, before a single SymPy
object is built, so that hostile input (``9**9**9**9``, ``x**(10**10)``,
10,000 nested parentheses, a megabyte of text, ``__import__('os')``) costs
microseconds and never needs SymPy imported. The command line runs it first.
"""

from __future__ import annotations

import ast
import math
import unicodedata
from collections.abc import Callable, Collection

from symdl.check.errors import ExpressionError

MAX_LENGTH = 2000
MAX_DEPTH = 100
MAX_EXPONENT = 1000
MAX_DIGITS = 10_000

#: Node classes an expression may contain (operators and contexts included).
ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Constant, ast.Compare, ast.BoolOp,
           ast.IfExp, ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.Not, ast.And,
           ast.Or, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_NAMES = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas", ast.Starred: "starred",
    ast.List: "lists", ast.Tuple: "tuples", ast.Dict: "dicts", ast.Set: "sets", ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignments", ast.GeneratorExp: "generators", ast.ListComp: "comprehensions",
    ast.Slice: "slices", ast.keyword: "keyword arguments", ast.FloorDiv: "operator //", ast.Mod: "operator %",
    ast.MatMult: "operator @", ast.BitAnd: "operator &", ast.BitOr: "operator |", ast.BitXor: "operator ^",
    ast.LShift: "operator <<", ast.RShift: "operator >>", ast.Invert: "operator ~", ast.Is: "operator is",
    ast.IsNot: "operator is not", ast.In: "operator in", ast.NotIn: "operator not in",
}
CONSTANTS = {"pi": math.pi, "e": math.e}


def column(node: ast.AST) -> str:
    """Where ``node`` starts, for an error message: ``(column 7)``."""
    return f"(column {getattr(node, 'col_offset', 0) + 1})"


def check_text(text: object) -> str:
    """Length, emptiness and bracket depth, on the raw text (before ``ast.parse`` can recurse)."""
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    if not text.strip():
        raise ExpressionError("expression is empty")
    depth = 0
    for position, char in enumerate(text):
        depth += char in "([{"
        depth -= char in ")]}"
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests brackets more than {MAX_DEPTH} deep (at character {position})")
    return text


def _depth(root: ast.AST) -> int:
    """Nesting depth of the tree, a chain of left-associative operators counting as one level.

    ``x + x + ... + x`` parses as a left spine of ``BinOp`` nodes, 999 deep for 999
    terms, but it is a flat sum (the builder walks such a spine in a loop); ``**``
    associates to the right and ``(((x)))``-style nesting still counts in full.
    """
    deepest, stack = 0, [(root, 1)]
    while stack and deepest <= MAX_DEPTH:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in ast.iter_child_nodes(node):
            chained = isinstance(node, ast.BinOp) and not isinstance(node.op, ast.Pow) and child is node.left
            stack.append((child, depth if chained and isinstance(child, ast.BinOp) else depth + 1))
    return deepest


def _constant(node: ast.Constant) -> None:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "strings" if isinstance(value, (str, bytes)) else f"{type(value).__name__} literals"
        raise ExpressionError(f"{kind} not allowed in expressions {column(node)}")
    if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
        raise ExpressionError(f"integer literal has more than {MAX_DIGITS} digits {column(node)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"number {value!r} is not finite {column(node)}")


_FLOAT_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if b else math.inf,
    ast.Pow: lambda a, b: math.inf if abs(b) > MAX_EXPONENT else abs(a) ** b if a or b >= 0 else math.inf,
}


def magnitude(node: ast.AST) -> float | None:
    """``|value|`` of a constant subexpression as a float (inf on overflow), None if it has variables or calls."""
    try:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return abs(float(node.value))
        if isinstance(node, ast.Name) and node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return magnitude(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _FLOAT_BINARY:
            left, right = magnitude(node.left), magnitude(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Sub | ast.Add):  # magnitudes only bound a sum
                return left + right
            return abs(_FLOAT_BINARY[type(node.op)](left, right))
    except (OverflowError, ZeroDivisionError, ValueError):
        return math.inf
    return None


def _power(node: ast.BinOp) -> None:
    exponent = magnitude(node.right)
    if exponent is not None and not exponent <= MAX_EXPONENT:
        raise ExpressionError(f"exponent {exponent:.3g} is too large (limit {MAX_EXPONENT}) {column(node)}")
    base = magnitude(node.left)
    if exponent is not None and base is not None and base > 0 and exponent * abs(math.log10(base)) > MAX_DIGITS:
        raise ExpressionError(f"power has more than {MAX_DIGITS} digits {column(node)}")


def _call(node: ast.Call, functions: Collection[str] | None) -> None:
    if not isinstance(node.func, ast.Name):
        raise ExpressionError(f"only named functions can be called {column(node)}")
    if node.keywords:
        raise ExpressionError(f"keyword arguments not allowed in a call of {node.func.id} {column(node)}")
    if functions is not None and node.func.id not in functions:
        raise ExpressionError(f"unknown function {node.func.id!r}; known: {', '.join(sorted(functions))}")


def parse_text(text: object) -> ast.Expression:
    """The syntax tree of ``text``, one Python expression under the text caps (:func:`check_text`).

    Nothing else is checked: :func:`validate` (and the matrix parser) judge the tree.
    """
    text = check_text(text)
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"not a valid expression: {error.msg} (column {error.offset or 0})") from None
    except UnicodeError:  # (a ValueError) a lone surrogate: bytes of the command line that are not UTF-8
        raise ExpressionError("expression holds characters that are not text (bytes that are not UTF-8?)") from None
    except (RecursionError, MemoryError, ValueError) as error:
        raise ExpressionError(f"expression too complex to parse ({type(error).__name__})") from None


def normalized(text: str) -> str:
    """``text`` in Unicode NFKC, as Python reads identifiers: the micro sign µ and the Greek mu μ are one name,
    and full-width ｘ＋１ reads as x+1 (every reader of expression text applies this first)."""
    return unicodedata.normalize("NFKC", text)


def validate(text: str, functions: Collection[str] | None = None, variables: Collection[str] | None = None
             ) -> ast.Expression:
    """The syntax tree of ``text`` if it is in the safe subset and under every cap.

    ``functions`` are the callable names and ``variables`` the other names
    allowed besides ``pi`` and ``e`` (None: any; the caller checks later).
    """
    tree = parse_text(text)
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"expression nests operations more than {MAX_DEPTH} deep")
    for node in ast.walk(tree):
        if not isinstance(node, ALLOWED):
            what = _NAMES.get(type(node), type(node).__name__)
            raise ExpressionError(f"{what} not allowed in expressions {column(node)}")
        if isinstance(node, ast.Constant):
            _constant(node)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            _power(node)
        elif isinstance(node, ast.Call):
            _call(node, functions)
    if variables is not None:
        called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and id(node) not in called and node.id not in variables \
                    and node.id not in CONSTANTS:
                known = ", ".join(sorted(variables)) or "none"
                raise ExpressionError(f"unknown name {node.id!r} (variables: {known}; constants: pi, e)")
    return tree


def called_names(tree: ast.AST) -> set[str]:
    """The names of the functions an expression calls."""
    return {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
