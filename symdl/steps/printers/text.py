"""Terminal text: the lines indented by depth, each rule's justification after the formula.

Expressions print as symdl's expression text (``sigmoid(x)*(1 - sigmoid(x))``, ``d/dx[...]``),
the same language ``symdl derive`` reads. The CLI colours the verification marks with rich when
the output is a terminal (:func:`rich_text`).
"""

from __future__ import annotations

import re
import textwrap

from symdl.steps.exprtext import reading_text as expression_text
from symdl.steps.printers.lines import Line, part_lines, verification_word
from symdl.steps.tree import Derivation, Segment, printer

__all__ = ["text", "rich_text"]


def sentence_text(segments: tuple[Segment, ...]) -> str:
    """Segments joined, math as expression text."""
    return "".join(s if isinstance(s, str) else _math(s) for s in segments)


def _math(expr: object) -> str:
    import sympy as sp

    if isinstance(expr, sp.Equality):
        return f"{expression_text(expr.lhs)} = {expression_text(expr.rhs)}"
    return expression_text(expr)  # type: ignore[arg-type]


def _line(line: Line) -> list[str]:
    pad = "  " * (line.depth + 1)
    why = sentence_text(line.why)
    mark = verification_word(line.check)
    left = f"{expression_text(line.lhs)} = " if line.lhs is not None else "= "
    head = f"{pad}{left}{expression_text(line.rhs)}" + (f"   [{mark}]" if mark else "")
    return [head] + ([f"{pad}    ({why})"] if why and why != "so" else [])


@printer("text")
def text(derivation: Derivation) -> str:
    """The derivation as plain text."""
    out = [f"{derivation.title or expression_text(derivation.expression)}", ""]
    if derivation.source_lines:  # plain text: the code as written, one statement a line (LaTeX is for the others)
        out += ["The function as written:", *(f"  {text}" for _, text in derivation.source_lines), ""]
    elif derivation.source:
        out += ["The function as written (latexify):", f"  {derivation.source}", ""]
    out += [f"let {expression_text(let.symbol)} = {expression_text(let.value)}"
            + (f"  ({let.text})" if let.text else "") for let in derivation.lets]
    out += [f"assume {expression_text(lhs)} = {expression_text(rhs)}" + (f"  ({w})" if w else "")
            for lhs, rhs, w in derivation.assumptions]
    if derivation.lets or derivation.assumptions:
        out.append("")
    for part in derivation.parts:
        out.append(part.title)
        for line in part_lines(derivation, part):
            out += _line(line)
        out += [f"  note: {n}" for n in part.notes]
        out.append("")
    out += [f"note: {n}" for n in derivation.notes]
    for key, value in derivation.result.items():
        out.append(f"result {key} = {expression_text(value)}")
    out.append("every step verified" if derivation.verified else
               f"NOT VERIFIED: {len(derivation.failures())} step(s) failed or were not checked")
    return "\n".join(out) + "\n"


#: The mark of a verified step (``[verified (expand)]``, :func:`verification_word`): coloured, and never split
#: across rows, so that it is coloured whole (the other marks are one word).
_VERIFIED = r"\[verified \([a-z]+\)\]"
_NO_BREAK = "\u00a0"  # textwrap breaks at ASCII whitespace only


def continuation_indent(line: str) -> str:
    """The indent of a wrapped ``line``'s continuation rows: a justification's ("(chain rule ...") one column
    past its parenthesis; a formula's eight columns past its own indent, deeper than its justification's
    four, so that a formula's second row is never read as the rule that justifies it."""
    indent = line[:len(line) - len(line.lstrip(" "))]
    return indent + (" " if line.lstrip(" ").startswith("(") else " " * 8)


def wrapped(plain: str, width: int) -> str:
    """``plain`` for a terminal ``width`` columns wide: a longer line is broken at its spaces and its
    continuation rows indented past the line's own indent (:func:`continuation_indent`), so the steps'
    nesting stays readable (the terminal's own wrap starts every row at column 0). A word longer than a row
    (a formula without spaces) stays whole; verification marks are never split."""
    rows = []
    for line in plain.split("\n"):
        if len(line) <= width:
            rows.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip(" "))]
        kept = re.sub(_VERIFIED, lambda m: m.group().replace(" ", _NO_BREAK), line.strip())
        pieces = textwrap.wrap(kept, width=width, initial_indent=indent, subsequent_indent=continuation_indent(line),
                               break_long_words=False, break_on_hyphens=False)
        rows += [piece.replace(_NO_BREAK, " ") for piece in pieces]
    return "\n".join(rows)


def rich_text(derivation: Derivation, width: int | None = None) -> object:
    """The text with the verification marks coloured (a ``rich.text.Text``), wrapped to ``width`` columns
    with hanging indents when given (:func:`wrapped`)."""
    from rich.text import Text

    plain = text(derivation)
    styled = Text(wrapped(plain, width) if width else plain)
    styled.highlight_regex(_VERIFIED + "|every step verified", "green")
    styled.highlight_regex(r"\[(FAILED|unchecked)\]|NOT VERIFIED.*", "bold red")
    styled.highlight_regex(r"(?m)^\S.*$", "bold")  # the headings: every line that starts at the margin
    return styled
