"""Markdown with GitHub math: a bold heading per part, each line a bullet ``$lhs = rhs$`` with its reason.

The reason is Markdown text with its math inline (``chain rule with $u = x^{2}$``), so that it wraps
like prose; a ``\\text{...}`` inside math would not wrap and would run off a GitHub page.
"""

from __future__ import annotations

from symdl.steps.printers.latex import _preamble_text, expr_latex
from symdl.steps.printers.lines import Line, part_lines, verification_word
from symdl.steps.tree import Derivation, Segment, printer

__all__ = ["markdown", "markdown_body", "sentence_markdown"]

#: Characters Markdown would read as markup in a sentence (emphasis, code, links, HTML, math).
_MARKUP = {c: "\\" + c for c in "\\*_`[]<>$|"}


def escape(text: str) -> str:
    """``text`` with Markdown's markup characters escaped (shown as themselves)."""
    return "".join(_MARKUP.get(c, c) for c in text)


def sentence_markdown(segments: tuple[Segment, ...]) -> str:
    """Segments as Markdown: text escaped, math as inline ``$...$``."""
    return "".join(escape(s) if isinstance(s, str) else f"${expr_latex(s)}$" for s in segments if s != "")


def _line(line: Line) -> str:
    pad = "  " * line.depth
    left = f"{expr_latex(line.lhs)} = " if line.lhs is not None else "= "
    why = sentence_markdown(line.why)
    mark = verification_word(line.check)
    tail = (f" &nbsp; {why}" if why else "") + (f" ({mark})" if mark else "")
    return f"{pad}- ${left}{expr_latex(line.rhs)}${tail}"


def markdown_body(derivation: Derivation) -> list[str]:
    """The derivation's lines below its title (derivations/ puts them under each catalog entry)."""
    out = []
    if derivation.source:
        out += ["The function as written:", "", "```math", derivation.source, "```", ""]
    out += [f"{p}\n" for p in _preamble_text(derivation)]
    for part in derivation.parts:
        out += [f"**{part.title}**", ""]
        out += [_line(line) for line in part_lines(derivation, part)]
        out += [""] + [f"_{escape(n)}_\n" for n in part.notes]
    out += [*derivation.notes, "Every step verified." if derivation.verified else "**Not every step verified.**"]
    return out


@printer("markdown")
def markdown(derivation: Derivation) -> str:
    """The derivation as GitHub Markdown."""
    lines = [f"### {derivation.title or 'Derivation'}", "", *markdown_body(derivation)]
    return "\n".join(lines).strip("\n") + "\n"
