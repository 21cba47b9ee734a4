"""HTML that renders offline: every formula as MathML (browsers render MathML Core natively; no script,
no network), converted from the LaTeX printer's formulas by :mod:`symdl.printing.mathml`, which
fails loudly on anything left unconverted."""

from __future__ import annotations

import html as _html

import sympy as sp

from symdl.printing.mathml import latex_to_mathml
from symdl.steps.printers.latex import WIDTH, expr_latex, formula_rows
from symdl.steps.printers.lines import Line, part_lines, verification_word
from symdl.steps.tree import Derivation, Segment, printer

__all__ = ["html_document", "html_fragment"]

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table.steps { border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }
table.steps td { padding: 0.25rem 0.5rem; vertical-align: top; border-bottom: 1px solid #eee; }
td.why, div.why { color: #555; font-size: 0.9em; }
div.formula { overflow-x: auto; padding: 0.15rem 0; }
td.ok { color: #1a7f37; font-size: 0.85em; white-space: nowrap; }
td.bad { color: #b00020; font-weight: bold; font-size: 0.85em; white-space: nowrap; }
math { font-size: 1.1em; }
p.verdict { font-weight: bold; }
""".strip()


def _math(expr: sp.Basic, display: bool = False) -> str:
    if isinstance(expr, sp.Equality):
        return latex_to_mathml(f"{expr_latex(expr.lhs)} = {expr_latex(expr.rhs)}", display)
    return latex_to_mathml(expr_latex(expr), display)


def _sentence(segments: tuple[Segment, ...]) -> str:
    return "".join(_html.escape(s) if isinstance(s, str) else _math(s) for s in segments if s != "")


def _row(line: Line) -> str:
    """One line as a table row: its justification above its formula (the formula gets the row's whole width),
    the formula broken into the rows the LaTeX printer sets on A4, the verification mark beside it."""
    broken = formula_rows(line, WIDTH - 2 * line.depth)
    source = broken[0] if len(broken) == 1 else r"\begin{aligned} &" + r" \\ &".join(broken) + r" \end{aligned}"
    formula = latex_to_mathml(source)
    why = _sentence(line.why)
    mark = verification_word(line.check)
    klass = "ok" if line.check is not None and line.check.ok else "bad"
    status = f'<td class="{klass if mark else "why"}">{_html.escape(mark)}</td>'
    return (f'<tr><td style="padding-left:{0.5 + 1.5 * line.depth:g}rem">'
            + (f'<div class="why">{why}</div>' if why else "")
            + f'<div class="formula">{formula}</div></td>{status}</tr>')


def _source(tex: str) -> str:
    """latexify-py's LaTeX as display MathML, without its spacing hints ``\\mathopen{}``/``\\mathclose{}``: the
    converter puts an empty ``<mrow/>`` inside an ``<mo>`` for them, and Chromium then lost the exponent of
    ``\\left( a - 1 \\right)^{2}`` (it showed ``(a-1)2``)."""
    return latex_to_mathml(tex.replace(r"\mathopen{}", "").replace(r"\mathclose{}", ""), True)


def html_fragment(derivation: Derivation) -> str:
    """The derivation as an HTML fragment (Jupyter's ``_repr_html_``)."""
    out = [f"<h2>{_html.escape(derivation.title or 'Derivation')}</h2>"]
    if derivation.source_lines:  # one formula per statement (latexify-py's LaTeX), as the code reads
        rows = "".join(f"<div>{_source(tex)}</div>" for tex, _ in derivation.source_lines if tex)
        out.append(f'<p>The function as written:</p><div class="source">{rows}</div>')
    elif derivation.source:
        out.append(f"<p>The function as written: {_source(derivation.source)}</p>")
    for let in derivation.lets:
        out.append(f"<p>Let {_math(sp.Eq(let.symbol, let.value, evaluate=False))}"
                   + (f" ({_html.escape(let.text)})" if let.text else "") + ".</p>")
    for lhs, rhs, words in derivation.assumptions:
        out.append(f"<p>Assume {_math(sp.Eq(lhs, rhs, evaluate=False))}"
                   + (f" ({_html.escape(words)})" if words else "") + ".</p>")
    for part in derivation.parts:
        out.append(f"<h3>{_html.escape(part.title)}</h3>")
        out.append('<table class="steps">' + "".join(_row(line) for line in part_lines(derivation, part)) + "</table>")
        out += [f"<p>{_html.escape(n)}</p>" for n in part.notes]
    out += [f"<p>{_html.escape(n)}</p>" for n in derivation.notes]
    verdict = "Every step verified." if derivation.verified else "Not every step verified."
    out.append(f'<p class="verdict">{verdict}</p>')
    return "\n".join(out) + "\n"


@printer("html")
def html_document(derivation: Derivation) -> str:
    """A complete, self-contained HTML page."""
    title = _html.escape(derivation.title or "Derivation")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>\n{STYLE}\n</style>\n</head>\n<body>\n{html_fragment(derivation)}</body>\n</html>\n")


printer("html_fragment")(html_fragment)
