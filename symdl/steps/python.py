r"""``FILE.py:f``: a Python function in latexify-py's subset (assignments, then one return), derived.

The file is never executed: its syntax tree is read, the function's statements are checked (only
``name = expression`` and a final ``return expression``, positional parameters without defaults or
decorators), and each expression goes through symdl's safe parser (``np.``/``math.`` prefixes
dropped). latexify-py renders the function as written, from the same syntax tree, one line per statement:
each assignment with a left arrow (``z \gets w x + 1``: an ``=`` would read as an equation, and ``w = w - v``
as a false one), then ``f(w, x) = ...`` for the return; the plain-text form is the code itself.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import sympy as sp

from symdl.steps.api import DEFAULT_TIMEOUT, DeriveError, derive_expression
from symdl.steps.tree import Derivation

__all__ = ["derive_function", "load_function", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 1 << 20
PREFIXES = frozenset({"np", "numpy", "math", "torch"})


class _Unprefix(ast.NodeTransformer):
    """``np.exp(x)`` -> ``exp(x)`` (symdl's parser knows the bare names)."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:  # noqa: N802 - ast's naming
        if isinstance(node.value, ast.Name) and node.value.id in PREFIXES:
            return ast.copy_location(ast.Name(id=node.attr, ctx=ast.Load()), node)
        return self.generic_visit(node)


def _split(spec: str) -> tuple[Path, str]:
    path_text, _, name = spec.rpartition(":")
    if not path_text.endswith(".py") or not name.isidentifier():
        raise DeriveError(f"{spec!r}: expected FILE.py:function")
    return Path(path_text), name


def _function_node(spec: str) -> tuple[ast.FunctionDef, str]:
    path, name = _split(spec)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DeriveError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DeriveError(f"{path}: cannot read it ({type(error).__name__}: {error})") from None
    try:
        module = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError, RecursionError) as error:
        raise DeriveError(f"{path}: not valid Python ({error})") from None
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node, str(path)
    raise DeriveError(f"{path}: no top-level function named {name!r}")


def load_function(spec: str) -> tuple[str, list[str], sp.Expr, str]:
    """``(name, parameters, expression, latex)`` of the function ``FILE.py:f``, without running the file."""
    node, path = _function_node(spec)
    return function_expression(node, path)


def _statements(node: ast.FunctionDef) -> list[ast.stmt]:
    """The body without its docstring."""
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return body


def function_expression(node: ast.FunctionDef, path: str) -> tuple[str, list[str], sp.Expr, str]:
    """``(name, parameters, expression, latex)`` of a function's syntax tree (see :func:`load_function`)."""
    where = f"{path}:{node.name}"
    args = node.args
    if node.decorator_list or args.defaults or args.kw_defaults or args.vararg or args.kwarg or args.kwonlyargs \
            or args.posonlyargs:
        raise DeriveError(f"{where}: only plain positional parameters (no defaults, decorators, *args or **kwargs)")
    params = [a.arg for a in args.args]
    body = _statements(node)
    if not body or not isinstance(body[-1], ast.Return) or body[-1].value is None:
        raise DeriveError(f"{where}: the function must end with `return expression`")
    from symdl.expr import parse

    known: dict[str, sp.Expr] = {}
    values: dict[sp.Symbol, sp.Expr] = {}
    for statement in body:
        line = f"{where} line {getattr(statement, 'lineno', '?')}"
        if isinstance(statement, ast.Return):
            target, value = None, statement.value
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                and isinstance(statement.targets[0], ast.Name):
            target, value = statement.targets[0].id, statement.value
        else:
            raise DeriveError(f"{line}: only `name = expression` and a final `return` (latexify-py's subset), "
                              f"not {type(statement).__name__}")
        if isinstance(statement, ast.Return) and statement is not body[-1]:
            raise DeriveError(f"{line}: an early return")
        # a copy: the tree itself is printed as written afterwards
        text = ast.unparse(_Unprefix().visit(copy.deepcopy(value)))
        try:
            expr = parse(text, variables=[*params, *known])
        except Exception as error:
            from symdl.errors import SymdlError

            if isinstance(error, SymdlError):
                raise DeriveError(f"{line}: {error}") from None
            raise
        expr = expr.xreplace(values)
        if target is None:
            return node.name, params, expr, _latex(node)
        known[target] = expr
        values[sp.Symbol(target, real=True)] = expr
    raise DeriveError(f"{where}: no return")  # unreachable: the last statement is a return


def _latex(node: ast.FunctionDef) -> str:
    """latexify-py's rendering of the function as written: ``\\begin{array}{l}`` with one row per statement."""
    return r"\begin{array}{l} " + r" \\ ".join(latex for latex, _ in source_lines(node) if latex) + r" \end{array}"


def source_lines(node: ast.FunctionDef) -> tuple[tuple[str, str], ...]:
    """The function as written, one ``(latex, text)`` pair per line: the signature's line ``def f(w, x):`` in text
    only (LaTeX puts the signature on the return's row), then every statement in order.

    LaTeX is latexify-py's: an assignment ``z = w*x + 1`` as ``z \\gets w x + 1`` (the left arrow DESIGN.md asks
    for: assignment, not equation), the return as latexify renders a function, ``f(w, x) = ...``. Text is the
    statement's code (``ast.unparse``: comments and line breaks dropped, Python's own notation kept).
    """
    from latexify import codegen, transformers

    trimmed = transformers.PrefixTrimmer(set(PREFIXES)).visit(ast.Module(body=[copy.deepcopy(node)],
                                                                           type_ignores=[]))
    function = trimmed.body[0]
    expression = codegen.ExpressionCodegen(use_math_symbols=True, use_set_symbols=False)
    lines = [("", f"def {node.name}({', '.join(a.arg for a in node.args.args)}):")]
    for statement, written in zip(_statements(function), _statements(node), strict=True):
        text = "    " + ast.unparse(written)
        if isinstance(statement, ast.Return):
            alone = ast.FunctionDef(name=function.name, args=function.args, body=[statement], decorator_list=[],
                                    returns=None, type_comment=None, type_params=[])
            tex = codegen.FunctionCodegen(use_math_symbols=True, use_signature=True,
                                          use_set_symbols=False).visit(ast.Module(body=[alone], type_ignores=[]))
        else:
            assign = statement
            assert isinstance(assign, ast.Assign)  # function_expression admitted only these two statements
            tex = rf"{expression.visit(assign.targets[0])} \gets {expression.visit(assign.value)}"
        lines.append((tex, text))
    return tuple(lines)


def derive_function(spec: str, wrt: object = None, *, verify: bool = True,
                    timeout: float | None = DEFAULT_TIMEOUT) -> Derivation:
    """The derivation of the Python function ``FILE.py:f`` with respect to its parameters (or ``wrt``)."""
    node, path = _function_node(spec)
    name, params, expr, latex = function_expression(node, path)
    variables = wrt if wrt is not None else [sp.Symbol(p, real=True) for p in params]
    derivation = derive_expression(expr, variables, title=f"{name}({', '.join(params)})", verify=verify,
                                   timeout=timeout)
    derivation.source = latex
    derivation.source_lines = source_lines(node)
    return derivation
