r"""LaTeX: each part an ``align*`` block (amsmath), justifications as ``\text{}`` on their own line.

Long right-hand sides are broken at the top-level ``+`` (then ``\cdot``) into lines of at most
:data:`WIDTH` characters of LaTeX source, which keeps every line on an A4 page (the tests compile
every catalog derivation with pdflatex and fail on an overfull box wider than a few points).
"""

from __future__ import annotations

import sympy as sp

from symdl.printing.latex import CatalogLatexPrinter
from symdl.steps.printers.breaking import rows, width
from symdl.steps.printers.lines import Line, part_lines, verification_word
from symdl.steps.tree import Derivation, Segment, printer

__all__ = ["expr_latex", "derivation_latex", "document", "formula_rows", "WIDTH"]

#: Characters of a formula's 2-D layout (:func:`symdl.steps.printers.breaking.width`) per row on A4.
WIDTH = 70


class StepLatexPrinter(CatalogLatexPrinter):
    """The catalog's LaTeX printer with derivatives written ``d/dx (...)`` as a textbook does."""

    def _print_Derivative(self, expr: sp.Derivative) -> str:
        variables = " ".join(self._print(v) for v, _ in expr.variable_count)
        inner = expr.expr
        body = self._print(inner)
        if not (inner.is_Symbol or isinstance(inner, sp.Indexed | sp.Function)):
            body = rf"\left({body}\right)"
        # a partial derivative when the function has other variables (integer symbols are indices or constants)
        others = [s for s in expr.free_symbols if not s.is_integer]
        partial = r"\partial" if len(others) > 1 and not isinstance(inner, sp.Indexed) else "d"
        return rf"\frac{{{partial}}}{{{partial} {variables}}} {body}"

    def _print_Pow(self, expr: sp.Pow) -> str:
        # SymPy hands a function's own _latex an ``exp`` keyword when it is raised to a power, which
        # symdl's primitives (sigmoid, softplus, Phi) do not take: parenthesise and raise it here
        base = expr.base
        if isinstance(base, sp.Function) and hasattr(base, "_latex") and expr.exp != -1:
            return rf"\left({self._print(base)}\right)^{{{self._print(expr.exp)}}}"
        return super()._print_Pow(expr)

    def _print_Rational(self, expr: sp.Rational) -> str:
        # a constant given to 30 digits (SELU's scale) prints as its decimal, to 17 significant digits
        if expr.q > 10**6:
            return self._print(sp.Float(expr, 17))
        return super()._print_Rational(expr)

    def _print_Mul(self, expr: sp.Mul) -> str:
        # the chain rule's d/du f(u) * d/dx u(x), kept in the order the rule states it
        if len(expr.args) > 1 and all(isinstance(a, sp.Derivative) for a in expr.args):
            return r" \cdot ".join(self._print(a) for a in expr.args)
        return super()._print_Mul(expr)

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta, exp: object = None) -> str:
        i, j = (self._print(a) for a in expr.args)
        return rf"\delta_{{{i} {j}}}"


def expr_latex(expr: sp.Basic) -> str:
    """One expression's LaTeX."""
    return StepLatexPrinter({}).doprint(expr)


#: LaTeX's ten special characters, and the three that the default (OT1) text font sets as other glyphs
#: (``x > 0`` printed as "x ¿ 0", ``<`` as "¡", ``|`` as an em dash), as text-mode commands.
_TEXT_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def escape_text(text: str) -> str:
    """``text`` safe in LaTeX's text mode (:data:`_TEXT_ESCAPES`): the step, graph, matrix and handout printers'
    one escape."""
    return "".join(_TEXT_ESCAPES.get(c, c) for c in text)


def sentence_latex(segments: tuple[Segment, ...]) -> str:
    """Text segments as ``\\text{}``, math segments as math."""
    return " ".join(rf"\text{{{escape_text(s)}}}" if isinstance(s, str) else expr_latex(s) for s in segments if s != "")


def _intertext_sentence(segments: tuple[Segment, ...]) -> str:
    """Segments as paragraph text (it wraps): text escaped, math inline."""
    return " ".join(escape_text(s) if isinstance(s, str) else f"${expr_latex(s)}$" for s in segments if s != "")


def _line_latex(line: Line) -> list[str]:
    """One printed line as ``align*`` rows: its justification as wrapping ``\\intertext``, then the formula
    broken into rows that fit the page (everything left-aligned after the ``&``, indented by depth), the
    verification mark at the right margin of its last row (``\\tag*``: amsmath sets it below when no room)."""
    indent = rf"\hspace*{{{line.depth * 1.2:g}em}}" if line.depth else ""
    room = WIDTH - 2 * line.depth
    why = _intertext_sentence(line.why)
    out = [rf"\intertext{{\small {indent}{why}}}"] if why else []
    out.extend(rf"&{indent} {r}" for r in formula_rows(line, room))
    mark = verification_word(line.check)
    if mark:
        out[-1] += rf" \tag*{{\small [{mark}]}}"
    return out


def formula_rows(line: Line, room: int) -> list[str]:
    """A line's formula as LaTeX rows of about ``room`` characters at most (the HTML printer sets the same rows):
    ``lhs = rhs`` on one row when it fits, else the left side's rows, then ``= `` and the right side's rows,
    continuation rows indented by ``\\qquad``."""
    right = rows(line.rhs, room - 3, expr_latex)
    head: list[str] = []
    if line.lhs is not None:
        left = rows(line.lhs, room, expr_latex)
        if len(left) == 1 and width(line.lhs) + width(line.rhs) + 3 <= room:
            return [f"{left[0]} = {right[0]}", *(rf"\qquad {r}" for r in right[1:])]
        head = left
    return [*head, f"= {right[0]}", *(rf"\qquad {r}" for r in right[1:])]


def derivation_latex(derivation: Derivation) -> list[tuple[str, str]]:
    """Each part as (title, ``align*`` block)."""
    blocks = []
    for part in derivation.parts:
        lines = [r for line in part_lines(derivation, part) for r in _line_latex(line)]
        body = ""
        for row in lines:  # rows end with \\; an \intertext starts a row of its own
            body += row + ("\n" if row.startswith("\\intertext") else " \\\\\n")
        blocks.append((part.title, "\\begin{align*}\n" + body.rstrip(" \\\n") + "\n\\end{align*}"))
    return blocks


def _preamble_text(derivation: Derivation) -> list[str]:
    out = []
    for let in derivation.lets:  # one paragraph each: inline math breaks only at its operators
        out.append(f"Let ${expr_latex(let.symbol)} = {expr_latex(let.value)}$"
                   + (f" ({escape_text(let.text)})" if let.text else "") + ".")
    for lhs, rhs, words in derivation.assumptions:
        out.append(f"Assume ${expr_latex(lhs)} = {expr_latex(rhs)}$" + (f" ({escape_text(words)})" if words else "")
                   + ".")
    return out


def body(derivation: Derivation) -> str:
    """The derivation as LaTeX body text (sections as paragraphs, each part an ``align*``)."""
    out = []
    if derivation.source:
        out += [r"\paragraph{The function as written}", f"\\[\n{derivation.source}\n\\]"]
    out += [p + "\n" for p in _preamble_text(derivation)]
    for title, block in derivation_latex(derivation):
        out += [rf"\paragraph{{{escape_text(title)}}}", block]
    out += [escape_text(n) for n in derivation.notes]
    verdict = "every step verified" if derivation.verified else "NOT every step verified"
    out.append(rf"\noindent\textit{{{verdict}}}")
    return "\n".join(out) + "\n"


def document(derivation: Derivation) -> str:
    """A complete LaTeX document (article, A4, amsmath): the name as the heading, the summary under it."""
    name, _, summary = (derivation.title or "Derivation").partition(": ")
    heading = (f"\\section*{{{escape_text(name)}}}\n"
               + (f"\\emph{{{escape_text(summary)}}}\n\\medskip\n\n" if summary else ""))
    return ("\\documentclass[a4paper,10pt]{article}\n\\usepackage{amsmath,amssymb}\n"
            "\\usepackage[margin=2.5cm]{geometry}\n\\allowdisplaybreaks\n\\begin{document}\n"
            f"{heading}{body(derivation)}\\end{{document}}\n")


printer("latex")(document)
printer("latex_body")(body)


@printer("jupyter_latex")
def _jupyter(derivation: Derivation) -> str:
    """Jupyter's ``_repr_latex_``: MathJax renders math only, so each part is one ``aligned`` block
    (no ``\\intertext``), the justification after each line, the blocks stacked in one ``gathered``
    (the line breaks between the blocks inside an environment, where MathJax and LaTeX both define them)."""
    displays = []
    for part in derivation.parts:
        rows = [rf"&\text{{{escape_text(part.title)}}}"]
        for line in part_lines(derivation, part):
            left = expr_latex(line.lhs) if line.lhs is not None else ""
            why = sentence_latex(line.why)
            mark = verification_word(line.check)
            note = why + (rf" \ \text{{[{mark}]}}" if mark else "")
            rows.append(rf"{left} &= {expr_latex(line.rhs)}" + (rf" && {note}" if note else ""))
        displays.append("\\begin{aligned}" + " \\\\\n".join(rows) + "\\end{aligned}")
    return "$$\\begin{gathered}" + "\\\\[1em]\n".join(displays) + "\\end{gathered}$$"
