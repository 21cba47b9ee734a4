"""Markdown with GitHub math: a bold heading per part, each line a bullet ``$lhs = rhs$`` with its reason."""

from __future__ import annotations

from symdl.steps.printers.latex import _preamble_text, expr_latex, sentence_latex
from symdl.steps.printers.lines import Line, part_lines, verification_word
from symdl.steps.tree import Derivation, printer

__all__ = ["markdown", "markdown_body"]


def _line(line: Line) -> str:
    pad = "  " * line.depth
    left = f"{expr_latex(line.lhs)} = " if line.lhs is not None else "= "
    why = sentence_latex(line.why)
    mark = verification_word(line.check)
    tail = (f" &nbsp; ${why}$" if why else "") + (f" ({mark})" if mark else "")
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
        out += [""] + [f"_{n}_\n" for n in part.notes]
    out += [*derivation.notes, "Every step verified." if derivation.verified else "**Not every step verified.**"]
    return out


@printer("markdown")
def markdown(derivation: Derivation) -> str:
    """The derivation as GitHub Markdown."""
    lines = [f"### {derivation.title or 'Derivation'}", "", *markdown_body(derivation)]
    return "\n".join(lines).strip("\n") + "\n"
