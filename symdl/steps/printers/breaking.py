r"""Breaking long formulas into rows that fit a page, by their structure.

A formula's printed width is estimated from SymPy's 2-D ``pretty`` layout (fractions stacked, as
LaTeX sets them), in characters. One that is too wide is cut where a textbook would cut it:

* a sum between its terms (continuation rows start with ``+`` or ``-``);
* a product between its factors; a factor that is itself too wide is broken inside
  ``\left( ... \right.`` / ``\left. ... \right)`` pairs, one per row;
* a piecewise function into one row per branch (``\text{if}`` / ``\text{otherwise}``);
* a function of a long argument, a power of a long base, a derivative of a long expression:
  the argument broken inside the function's own brackets.

Anything else stays one row (the LaTeX tests catch a row that still overflows).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import sympy as sp

__all__ = ["rows", "width"]

_HOLE = sp.Symbol(r"\diamond")  # prints as itself, so a shell splits around it


@lru_cache(maxsize=4096)
def width(expr: sp.Basic) -> int:
    """The widest line of ``expr``'s 2-D layout, in characters."""
    try:
        text = sp.pretty(expr, use_unicode=True, wrap_line=False)
    except Exception:  # noqa: BLE001 - a layout failure only loses the estimate
        text = str(expr)
    return max((len(line) for line in text.splitlines()), default=0)


def _wrap(prefix: str, inner: list[str], suffix: str) -> list[str]:
    """``prefix inner suffix`` over several rows, the brackets closed with ``\\right.`` and reopened
    with ``\\left.`` on each row."""
    if len(inner) == 1:
        return [f"{prefix}{inner[0]}{suffix}"]
    first, *middle, last = inner
    return [f"{prefix}{first} \\right.", *(f"\\left. {m} \\right." for m in middle), f"\\left. {last}{suffix}"]


def _group(pieces: list[tuple[sp.Basic, str]], limit: int, joiner: Callable[[int, str], str],
           latex: Callable[[sp.Basic], str], rows_of: Callable[[sp.Basic, int], list[str]]) -> list[str]:
    """Pieces (expression, its LaTeX) packed greedily into rows of at most ``limit`` characters."""
    out: list[str] = []
    current, current_width = "", 0
    for index, (piece, text) in enumerate(pieces):
        w = width(piece) + 2
        if w > limit:  # a piece too wide on its own: broken, on rows of its own
            if current:
                out.append(current)
            broken = rows_of(piece, limit)
            broken[0] = joiner(index, broken[0])
            out.extend(broken)
            current, current_width = "", 0
            continue
        if current and current_width + w > limit:
            out.append(current)
            current, current_width = "", 0
        current = f"{current} {joiner(index, text)}".strip() if current or index == 0 else joiner(index, text)
        current_width += w
    if current:
        out.append(current)
    return out


def rows(expr: sp.Basic, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    """``expr``'s LaTeX as rows, each about ``limit`` characters wide at most."""
    if width(expr) <= limit:
        return [latex(expr)]
    for cls, breaker in _BREAKERS:
        if isinstance(expr, cls):
            return breaker(expr, limit, latex)
    return [latex(expr)]


def _add(expr: sp.Add, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    terms = list(expr.as_ordered_terms())

    def joiner(index: int, text: str) -> str:
        return text if index == 0 or text.lstrip().startswith("-") else f"+ {text}"

    return _group([(t, latex(t)) for t in terms], limit, joiner, latex, lambda e, w: rows(e, w, latex))


def _paren(factor: sp.Basic, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    inner = rows(factor, limit - 4, latex)
    if isinstance(factor, sp.Add) and len(inner) > 1:
        return _wrap("\\left(", inner, "\\right)")
    return inner


def _mul(expr: sp.Mul, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    coefficient, rest = expr.as_coeff_Mul()
    if coefficient == -1 and rest != 1:  # a leading minus sign, not a factor "-1"
        broken = rows(rest, limit - 2, latex)
        if len(broken) == 1 or isinstance(rest, sp.Mul):
            return [f"- {broken[0]}", *broken[1:]]
        return _wrap("- \\left(", broken, "\\right)")
    numerator, denominator = sp.fraction(expr)
    factors: list[sp.Basic] = list(sp.Mul.make_args(numerator))
    if denominator != 1:
        factors.insert(0, sp.Pow(denominator, -1, evaluate=False))
    if len(factors) == 1:
        return _paren(factors[0], limit, latex)
    from sympy.printing.precedence import PRECEDENCE

    def text(f: sp.Basic) -> str:
        body = latex(f)
        return f"\\left({body}\\right)" if isinstance(f, sp.Add) or (f.is_Number and f.is_negative and f != -1) \
            else body

    def joiner(index: int, piece: str) -> str:
        return piece if index == 0 else f"\\cdot {piece}"

    del PRECEDENCE
    return _group([(f, text(f)) for f in factors], limit, joiner, latex, lambda e, w: _paren(e, w, latex))


def _piecewise(expr: sp.Piecewise, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    out = []
    for index, (value, condition) in enumerate(expr.args):
        when = r"\quad \text{otherwise}" if condition is sp.true else rf"\quad \text{{if }} {latex(condition)}"
        broken = rows(value, limit - 6, latex)
        lead = r"\text{either } " if index == 0 else r"\text{or } "
        broken[0] = lead + broken[0]
        if condition is not sp.true and width(condition) > limit // 3:  # a long condition gets a row of its own
            out += [*broken, rf"\qquad \text{{if }} {latex(condition)}"]
            continue
        broken[-1] += when
        out += broken
    return out


def _function(expr: sp.Function, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    if len(expr.args) != 1:
        return [latex(expr)]
    shell = r"\exp\left(\diamond\right)" if isinstance(expr, sp.exp) else latex(expr.func(_HOLE))
    if shell.count(r"\diamond") != 1:
        return [latex(expr)]
    prefix, suffix = shell.split(r"\diamond")
    if prefix.count("{") != prefix.count("}"):  # the argument sits inside braces (a superscript): one row
        return [latex(expr)]
    return _wrap(prefix, rows(expr.args[0], limit - 6, latex), suffix)


def _pow(expr: sp.Pow, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    return _wrap("\\left(", rows(expr.base, limit - 6, latex), f"\\right)^{{{latex(expr.exp)}}}")


def _derivative(expr: sp.Derivative, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    shell = latex(sp.Derivative(_HOLE, *expr.variables, evaluate=False))
    prefix = shell.split(r"\diamond")[0]
    return _wrap(prefix + "\\left(", rows(expr.expr, limit - 8, latex), "\\right)")


def _sum(expr: sp.Sum, limit: int, latex: Callable[[sp.Basic], str]) -> list[str]:
    shell = latex(sp.Sum(_HOLE, *expr.limits))
    prefix = shell.split(r"\diamond")[0]
    return _wrap(prefix + "\\left(", rows(expr.function, limit - 8, latex), "\\right)")


_BREAKERS: tuple[tuple[type, Callable[[sp.Basic, int, Callable[[sp.Basic], str]], list[str]]], ...] = (
    (sp.Add, _add), (sp.Mul, _mul), (sp.Piecewise, _piecewise), (sp.Derivative, _derivative), (sp.Pow, _pow),
    (sp.Sum, _sum), (sp.Function, _function),
)
